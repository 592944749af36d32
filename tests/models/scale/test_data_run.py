"""ppl scale on your own Hugging Face LM, reward model and JSON-lines data (tiny random checkpoints
written by the test, tests/models/scale/hf_fixtures.py)."""

import dataclasses
import json

import pytest

from ppl_models.scale import ScaleConfig

from ppl_models.scale.tiny_hf import PROBLEMS, write


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write(tmp_path_factory.mktemp("hf"))


def test_data_setup_prompts_delimiter_answers_and_memory(folders):
    from ppl_models.scale.data_setup import INSTRUCTION, memory_estimate, setup
    from ppl_models.scale.job import _check_memory

    lm_dir, prm_dir, data = folders
    cfg = ScaleConfig(num_problems=4, data=str(data), checkpoint=str(lm_dir), prm_checkpoint=str(prm_dir),
                      max_steps=3, max_step_tokens=8).validate()
    s = setup(cfg)
    text = s.tokenizer.decode([int(t) for t in s.prompts[0]], skip_special_tokens=False)
    assert text == f"<|im_start|>user\n{PROBLEMS[0]['problem']}\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
    assert [p.answer for p in s.problems] == ["3", "\\frac{1}{2}", "4", "6"]  # the second from its \boxed{}
    assert s.program.config.delimiter == (s.tokenizer.encode("\n\n", add_special_tokens=False).ids[0],)
    ids = s.tokenizer.encode("So $x = \\boxed{0.5}$.", add_special_tokens=False).ids
    assert s.answer_fn(ids) == "0.5" and s.is_right(s.answer_fn(ids), s.problems[1])
    assert not s.is_right(None, s.problems[0]) and not s.is_right("2", s.problems[0])
    # the classifier reads Qwen2.5-Math-PRM's <extra_0> after each step (auto: its tokenizer has it)
    reward = s.reward_for(s.problems[0])
    assert reward.separator == s.tokenizer.token_to_id("<extra_0>")
    assert reward.step_ends == (s.program.config.delimiter[0], *s.lm.eos_token_ids)
    assert setup(dataclasses.replace(cfg, prm_separator="none")).reward_for(s.problems[0]).separator is None
    # left-padded: every prompt ends at the padded width W and shares its W - 1 slots' cache
    width = s.program.data["prompt"].shape[0]
    assert s.program.padding == "left" and s.program.shared_prefix == width - 1
    assert {s.program.with_prompt(p).static_key() for p in s.prompts} == {s.program.static_key()}
    est = memory_estimate(s, 16)
    c = s.lm.config
    slot = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4
    T = s.program.max_length
    # the reward body has the LM's shape and reads every slot; the LM's particles hold T - (W - 1)
    assert est["cache_per_particle"] == slot * (T - width + 1) + slot * T and est["fits"]
    assert est["prompt_cache"] == slot * (width - 1)
    assert est["total"] == (est["lm_weights"] + est["reward_weights"] + est["prompt_cache"]
                            + 16 * est["cache_per_particle"])
    with pytest.raises(ValueError, match="does not fit"):
        _check_memory(s, 10**9, log=lambda m: None)


def test_data_options_are_checked_before_compute(folders, capsys, tmp_path):
    from ppl_models.cli import main

    lm_dir, prm_dir, data = folders
    with pytest.raises(ValueError, match="needs checkpoint"):
        ScaleConfig(data=str(data)).validate()
    with pytest.raises(ValueError, match="prm_type"):
        ScaleConfig(data=str(data), checkpoint="a", prm_checkpoint="b", prm_type="magic").validate()
    assert main(["scale", "--data", str(data) + ".missing", "--checkpoint", str(lm_dir), "--prm-checkpoint",
                 str(prm_dir), "--quiet"]) == 2
    assert "not a file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="prm_separator"):
        ScaleConfig(data=str(data), checkpoint="a", prm_checkpoint="b", prm_separator="").validate()
    args = ["scale", "--data", str(data), "--checkpoint", str(lm_dir), "--prm-checkpoint", str(prm_dir),
            "--problems", "4", "--prm-separator", "<no such token>", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 2
    assert "separator='<no such token>' encodes as" in capsys.readouterr().err
    # refused before any problem ran: no stale samples.jsonl, so the same command is refused the same way
    assert not (tmp_path / "samples.jsonl").exists()
    assert main(args) == 2 and "separator=" in capsys.readouterr().err


@pytest.mark.slow  # 2-3 min: six methods compiled at three budgets on a tiny model
def test_ppl_scale_on_checkpoints_and_data_writes_the_bundled_schema(folders, tmp_path):
    from ppl_models.cli import main

    lm_dir, prm_dir, data = folders
    out = tmp_path / "out.json"
    assert main(["scale", "--checkpoint", str(lm_dir), "--prm-checkpoint", str(prm_dir), "--data", str(data),
                 "--quick", "--problems", "4", "--max-steps", "3", "--max-step-tokens", "8", "--json", str(out),
                 "--out", str(tmp_path / "o"), "--no-plot", "--quiet"]) == 0
    got = json.loads(out.read_text())
    assert {"methods", "coverage", "num_problems", "tokens_per_rollout", "problems", "config", "seconds"} <= set(got)
    assert got["num_problems"] == 4 and got["config"]["data"] == str(data)
    assert set(got["methods"]) == {"best_of_n", "weighted_best_of_n", "majority_vote", "beam_search", "dvts",
                                   "particle_filter"}
    for m in got["methods"].values():
        assert m["budgets"] == [1, 4, 16] and len(m["accuracy"]) == 3
    lines = [json.loads(x) for x in (tmp_path / "o" / "samples.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "pool" for r in lines) == 4


@pytest.mark.slow  # 15-20 s, two whole runs; the engine-level check is in the default suite
# (tests/models/lm/test_left_padding.py::test_left_padded_batch_equals_each_prompt_alone)
def test_prompts_of_different_lengths_run_in_one_compiled_batch(folders):
    """The four prompts differ in length; left-padded to the longest, they run as one vmapped batch
    (ppl.scaling.batched, one compiled call) and give the one-by-one run's tokens and outcomes."""
    import dataclasses

    from ppl_models.scale import run_scale
    from ppl_models.scale.data_setup import setup

    lm_dir, prm_dir, data = folders
    cfg = ScaleConfig(methods=("particle_filter",), budgets=(2,), num_problems=4, data=str(data),
                      checkpoint=str(lm_dir), prm_checkpoint=str(prm_dir), max_steps=3, max_step_tokens=8)
    assert len({len(p) for p in setup(cfg.validate()).prompts}) > 1
    one = run_scale(cfg, progress=False)
    batch = run_scale(dataclasses.replace(cfg, devices=1, problems_per_device=4), progress=False)
    for m in cfg.methods:
        assert batch.methods[m].generated_tokens == one.methods[m].generated_tokens
        assert batch.methods[m].correct == one.methods[m].correct


def test_judge_and_outcome_reward_types_load_through_the_data_setup(folders):
    """--prm-type lm-judge reads an LM's probability of '+' against '-' (one token each in the
    checkpoint's tokenizer); the scores lie in (0, 1) and sum with the bad token's to one."""
    import numpy as np

    from ppl_models.scale.data_setup import setup

    lm_dir, prm_dir, data = folders
    cfg = ScaleConfig(num_problems=2, data=str(data), checkpoint=str(lm_dir), prm_checkpoint=str(lm_dir),
                      prm_type="lm-judge", max_steps=2, max_step_tokens=4).validate()
    s = setup(cfg)
    judge = s.reward_for(s.problems[0])
    tok = s.tokenizer
    assert (judge.good, judge.bad) == (tok.token_to_id("+"), tok.token_to_id("-"))
    r = judge.scores(s.prompts[0][None])
    assert r.shape == (1, len(s.prompts[0])) and np.all((r > 0) & (r < 1))
    with pytest.raises(ValueError, match="the 'outcome' head needs the tensor 'score.weight'"):
        setup(ScaleConfig(num_problems=2, data=str(data), checkpoint=str(lm_dir), prm_checkpoint=str(prm_dir),
                          prm_type="outcome").validate())
