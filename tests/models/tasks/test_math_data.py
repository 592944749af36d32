"""Math answers: extraction from \\boxed{} and ####, grading with math-verify, JSON-lines loaders."""

import json

import pytest

from ppl_models.tasks.benchmarks import load_jsonl, sample_problems
from ppl_models.tasks.grading import extract_answer, grade


@pytest.mark.parametrize("answer, reference, same", [
    (r"\frac{1}{2}", "0.5", True),
    ("0.5", r"\frac{1}{2}", True),
    (r"\boxed{x=3}", "3", True),
    ("x = 3", "3", True),
    (r"\dfrac{3}{8}", "0.375", True),
    (r"5\sqrt{2}", r"\sqrt{50}", True),
    ("(-2, 2)", "(-2,2)", True),
    (r"(-2, 2]", "(-2,2)", False),
    ("[1,2)", r"[1, 2)", True),
    ("2, 3", "3, 2", True),  # a set of solutions, in any order
    ("2, 4", "2, 3", False),
    ("21", "22", False),
    (r"\frac{1}{3}", "0.33", False),
    ("7", "7", True),
])
def test_grading_agrees_with_math_verify_on_equivalent_forms(answer, reference, same):
    assert grade(answer, reference) is same


def test_grading_of_no_answer_and_bad_types():
    assert grade(None, "3") is False
    assert grade("not a number at all", "3") is False
    with pytest.raises(TypeError, match="grade"):
        grade(3, "3")


@pytest.mark.parametrize("text, want", [
    (r"so the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"first \boxed{1}, then \boxed{2}", "2"),  # the last box
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces inside
    (r"\fbox{7}", "7"),
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("It costs 1,250 dollars.\n#### 1,250", "1250"),
    ("no final answer here", None),
    (r"\boxed{unbalanced", None),
])
def test_answer_extraction(text, want):
    assert extract_answer(text) == want


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_loaders_read_math_gsm8k_aime_and_mapped_fields(tmp_path):
    math = _write(tmp_path / "math.jsonl", [
        {"problem": "1+1?", "solution": r"It is $\boxed{2}$.", "unique_id": "a"},
        {"problem": "half?", "answer": r"\frac{1}{2}", "solution": "..."}])
    got = load_jsonl(math)
    assert [(p.problem, p.answer, p.id) for p in got] == [("1+1?", "2", "a"), ("half?", r"\frac{1}{2}", "1")]
    gsm = _write(tmp_path / "gsm.jsonl", [{"question": "How many?", "answer": "3 + 4 = 7\n#### 7"}])
    (p,) = load_jsonl(gsm)
    assert (p.problem, p.answer, p.solution) == ("How many?", "7", "3 + 4 = 7")
    aime = _write(tmp_path / "aime.jsonl", [{"Problem": "Find N.", "Answer": 204, "ID": "2024-I-1"}])
    (p,) = load_jsonl(aime, format="aime", fields={"id": "ID"})
    assert (p.problem, p.answer, p.id) == ("Find N.", "204", "2024-I-1")
    own = _write(tmp_path / "own.jsonl", [{"prompt": "q", "target": "5"}, {}, {"prompt": "r", "target": "6"}][::2])
    assert [p.answer for p in load_jsonl(own, fields={"problem": "prompt", "answer": "target"})] == ["5", "6"]
    assert len(load_jsonl(math, limit=1)) == 1


def test_loader_errors_name_the_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "a", "answer": "1"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: not JSON"):
        load_jsonl(bad)
    _write(bad, [{"problem": "a", "answer": "1"}, {"problem": "b", "solution": "no box"}])
    with pytest.raises(ValueError, match=r"line 2: no answer"):
        load_jsonl(bad)
    _write(bad, [{"text": "a", "answer": "1"}])
    with pytest.raises(ValueError, match=r"line 1: cannot tell the format"):
        load_jsonl(bad)
    with pytest.raises(ValueError, match=r"line 1: no problem field \(looked for \['question'\]"):
        load_jsonl(bad, fields={"problem": "question"})
    with pytest.raises(ValueError, match="format"):
        load_jsonl(bad, format="csv")
    with pytest.raises(ValueError, match="fields"):
        load_jsonl(bad, fields={"question": "text"})
    with pytest.raises(FileNotFoundError, match="no file"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_the_shipped_sample_problems_grade_their_own_solutions():
    problems = sample_problems()
    assert len(problems) == 8 and len({p.id for p in problems}) == 8
    for p in problems:
        assert grade(extract_answer(p.solution), p.answer), p
    assert not grade(extract_answer(problems[0].solution), problems[1].answer)
