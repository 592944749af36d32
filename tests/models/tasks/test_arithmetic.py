"""Modular arithmetic chains: determinism, split disjointness, checker and extractor."""

import hashlib

import jax
import pytest

from ppl_models.tasks import arithmetic as A
from ppl_models.tasks import tokenizer as T


def _brute_answer(start, ops, m):
    # an independent evaluation: Python's modular arithmetic step by step
    x = start
    for op, k in ops:
        x = eval(f"({x}){op}({k})") % m
    return x


def test_generation_is_deterministic():
    a = A.generate(50, "hard", "test", seed=3)
    b = A.generate(50, "hard", "test", seed=3)
    c = A.generate(50, "hard", "test", seed=4)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    assert [p.prompt for p in a] != [p.prompt for p in c]
    # jax keys work as seeds, deterministically
    k = jax.random.key(7)
    assert A.sample(k, "easy").prompt == A.sample(k, "easy").prompt
    assert A.sample(k, "easy").prompt != A.sample(jax.random.key(8), "easy").prompt


@pytest.mark.parametrize("name", ["easy", "medium", "hard", "expert"])
def test_difficulty_presets(name):
    d = A.DIFFICULTIES[name]
    for p in A.generate(40, name, "all", seed=1):
        assert p.num_steps == d.num_steps and p.modulus == d.modulus
        assert 0 <= p.start < d.modulus
        for op, k in p.ops:
            assert (2 <= k <= d.max_multiplier) if op == "*" else (1 <= k < d.modulus)
        assert p.answer == _brute_answer(p.start, p.ops, p.modulus)
        assert p.prompt.endswith(f" mod {d.modulus}\n")


def test_splits_are_disjoint_and_hash_based():
    train = A.generate(2000, "easy", "train", seed=0)
    test = A.generate(2000, "easy", "test", seed=0)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in test})
    assert len({p.prompt for p in test}) == 2000  # unique
    for p in test[:50]:
        h = int.from_bytes(hashlib.sha256(p.prompt.encode()).digest()[:8], "big")
        assert h / 2.0**64 < A.TEST_FRACTION
    # the split of a prompt does not depend on the seed that drew it
    mixed = A.generate(1000, "easy", "all", seed=9)
    frac = sum(p.split == "test" for p in mixed) / len(mixed)
    assert abs(frac - A.TEST_FRACTION) < 0.05
    assert all(p.split == "train" for p in train)


def test_reference_solution_format_and_check():
    p = A.make_problem(34, [("+", 21), ("*", 3), ("-", 17)], 97)
    assert p.prompt == "34+21*3-17 mod 97\n"
    assert p.solution == "34+21=55=55\n55*3=165=68\n68-17=51=51\nanswer: 51"
    assert p.answer == 51
    assert A.check(p, p.solution)
    assert A.step_correctness(p, p.solution) == [True, True, True, True]
    # negative raw value
    q = A.make_problem(12, [("-", 17)], 97)
    assert q.solution == "12-17=-5=92\nanswer: 92"


def test_checker_on_hand_written_solutions():
    p = A.make_problem(34, [("+", 21), ("*", 3), ("-", 17)], 97)
    right = "34+21=55=55\n55*3=165=68\n68-17=51=51\nanswer: 51"
    wrong_answer = "34+21=55=55\n55*3=165=68\n68-17=51=51\nanswer: 52"
    wrong_step = "34+21=55=55\n55*3=165=69\n69-17=52=52\nanswer: 52"
    lucky = "34+21=56=56\n56*3=168=71\n71-17=54=51\nanswer: 51"  # right answer, wrong steps
    assert A.check(p, right)
    assert A.check(p, right + "\n")  # trailing newline is fine
    assert not A.check(p, wrong_answer)
    assert not A.check(p, wrong_step)
    assert A.check(p, lucky)  # outcome check only looks at the answer...
    assert A.step_correctness(p, lucky) == [False, False, False, False]  # ...the process check does not
    assert A.step_correctness(p, wrong_step) == [True, False, False, False]
    assert A.step_correctness(p, wrong_answer) == [True, True, True, False]
    assert A.step_correctness(p, "34+21=55=55\n55*3=1") == [True, False]  # unfinished step
    assert A.step_correctness(p, "34+21=55=55\n") == [True]
    assert A.step_correctness(p, "") == []
    assert A.step_correctness(p, right + "\nanswer: 51") == [True] * 4 + [False]  # past the end


@pytest.mark.parametrize("text", [
    "", "\n\n", "answer:", "answer: ", "answer: x", "answer: 5 6", "the answer is 5", "answer 5",
    "answer: 5\n34+21=55=55", "answer: 99999999999999999999", "\x00\xff", None, 17, b"\xff\xfe", ["answer: 5"],
    "answer: 5" * 1000, "ANSWER: 5",
])
def test_malformed_output_gives_no_answer(text):
    p = A.make_problem(34, [("+", 21)], 97)
    assert A.extract_answer(text) is A.NO_ANSWER
    assert A.check(p, text) is False
    assert isinstance(A.step_correctness(p, text), list)


def test_extract_answer_well_formed():
    assert A.extract_answer("1+2=3=3\nanswer: 3") == 3
    assert A.extract_answer("answer:7\n\n") == 7
    assert A.extract_answer(b"answer: 12") == 12
    assert A.extract_answer("answer: -4") == -4
    assert A.extract_answer("answer: 3\nanswer: 4") == 4  # the last line counts


def test_parse_step():
    assert A.parse_step("55*3=165=68") == (55, "*", 3, 165, 68)
    assert A.parse_step("12-17=-5=92") == (12, "-", 17, -5, 92)
    assert A.parse_step("55*3=165") is None
    assert A.parse_step("garbage") is None


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="difficulty"):
        A.generate(1, "impossible")
    with pytest.raises(ValueError, match="split"):
        A.generate(1, "easy", split="validation")
    with pytest.raises(ValueError, match="num_steps"):
        A.Difficulty(num_steps=0, modulus=7)
    with pytest.raises(ValueError, match="distinct"):
        A.generate(100, A.Difficulty(num_steps=1, modulus=2, max_multiplier=2), "all")


def test_tokenizer_roundtrip(tmp_path):
    tok = T.build_tokenizer()
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("<eos>") == 1
    for p in A.generate(20, "hard", "train", seed=2):
        text = p.prompt + p.solution
        ids = T.encode(tok, text)
        assert len(ids) == len(text)  # one token per character
        assert T.decode(tok, ids + [tok.token_to_id("<eos>")]) == text
        assert tok.token_to_id("<unk>") not in ids
    tok.save(str(tmp_path / "tokenizer.json"))
    tok2 = T.load_tokenizer(tmp_path)
    assert T.encode(tok2, "12*3=36=13\n") == T.encode(tok, "12*3=36=13\n")
    assert T.newline_id(tok) == tok.token_to_id("\n")
