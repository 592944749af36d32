"""The main job (`ppl scale`): configuration, intervals, outputs, determinism."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from ppl_models.scale import ScaleConfig, run_scale
from ppl_models.scale.cli import config_from_args
from ppl_models.scale.job import METHODS, wilson
from ppl_models.scale.report import format_table, plot, summary, write_json


def test_wilson_matches_closed_form_and_covers():
    # Hand value: k=10, n=20 -> centre 0.5, half-width z*sqrt(0.25/20 + z^2/1600)/(1+z^2/20).
    z = 1.959963984540054
    lo, hi = wilson(10, 20)
    half = z * math.sqrt(0.25 / 20 + z * z / 1600) / (1 + z * z / 20)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    # Coverage of the 95% interval over binomial draws is near nominal.
    rng = np.random.default_rng(0)
    p, n = 0.3, 48
    ks = rng.binomial(n, p, size=4000)
    cover = np.mean([lo <= p <= hi for lo, hi in (wilson(int(k), n) for k in ks)])
    assert 0.93 < cover < 0.975


@pytest.mark.parametrize("field, value, match", [
    ("methods", ("best_of_n", "nope"), "methods"),
    ("budgets", (1, 0), "budgets"),
    ("budgets", (2, 2), "budgets"),
    ("num_problems", 0, "num_problems"),
    ("prm", "magic", "prm"),
    ("pf_weighting", "magic", "pf_weighting"),
    ("pf_select", "mode", "pf_select"),
    ("temperature", 0.0, "temperature"),
    ("difficulty", "impossible", "difficulty"),
    ("devices", -1, "devices"),
    ("devices", 10_000, "devices: asked for 10000"),
    ("problems_per_device", 0, "problems_per_device"),
    ("problems_per_device", 2, "problems_per_device: 2 needs devices >= 1"),
    ("bounds_particles", 1, "bounds_particles"),
    ("bounds_particles", -2, "bounds_particles"),
    ("bounds_runs", 1, "bounds_runs"),
])
def test_bad_config_is_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(ScaleConfig(), **{field: value}).validate()


def test_cli_options_map_to_config():
    from ppl_models.cli import build_parser

    args = build_parser().parse_args(["scale", "--quick", "--methods", "best_of_n,particle_filter",
                                      "--prm", "oracle", "--seed", "3"])
    cfg = config_from_args(args)
    assert cfg.methods == ("best_of_n", "particle_filter")
    assert cfg.budgets == (1, 4, 16) and cfg.num_problems == 16 and cfg.prm == "oracle" and cfg.seed == 3
    assert cfg.devices == 0 and cfg.problems_per_device == 1  # one by one unless asked
    args = build_parser().parse_args(["scale", "--budgets", "8,2", "--problems", "5", "--devices", "1",
                                      "--problems-per-device", "3"])
    cfg = config_from_args(args)
    assert cfg.budgets == (2, 8) and cfg.num_problems == 5
    assert cfg.devices == 1 and cfg.problems_per_device == 3
    assert set(cfg.methods) <= set(METHODS)
    assert (cfg.pf_weighting, cfg.pf_select, cfg.prm) == ("softmax", "argmax", "learned")  # the reference's PF
    args = build_parser().parse_args(["scale", "--pf-weighting", "ratio", "--pf-select", "vote",
                                      "--prm", "noisy-oracle", "--prm-noise", "8"])
    cfg = config_from_args(args)
    assert (cfg.pf_weighting, cfg.pf_select, cfg.prm, cfg.prm_noise) == ("ratio", "vote", "noisy-oracle", 8.0)


def test_noisy_oracle_is_the_problems_oracle_with_deterministic_noise():
    import jax

    from ppl_models.scale.job import _setup
    from tests.models.rewards.test_rewards import _state

    def scores(sigma):
        s = _setup(ScaleConfig(num_problems=2, prm="noisy-oracle", prm_noise=sigma).validate())
        problem = s.problems[1]
        reward = s.reward_for(problem)
        assert reward.base.problem is problem and reward.sigma == sigma
        texts = [problem.solution, problem.solution.replace("=", "=1", 1), s.problems[0].solution]
        score = jax.jit(reward.log_score)
        return [float(score(reward.params, _state(s.tokenizer, problem.prompt, t, max_length=s.program.max_length)))
                for t in texts]

    clean = scores(0.0)
    assert clean[0] == pytest.approx(math.log1p(-1e-4), abs=1e-6)  # the clipped oracle: right prefix
    assert clean[1] == pytest.approx(math.log(1e-4), rel=1e-4) and clean[2] == pytest.approx(math.log(1e-4), rel=1e-4)
    noisy, again = scores(8.0), scores(8.0)
    assert noisy == again  # the same prefix always gets the same score
    logit = lambda x: x - math.log(-math.expm1(x))  # noqa: E731
    assert all(abs(logit(a) - logit(b)) > 1e-3 for a, b in zip(noisy, clean))  # noise on the log-odds


def test_prm_checkpoint_reads_the_features_lm_it_is_given(tmp_path):
    # a user's PRM folder reads the bundled verifier LM by default, or --prm-features-lm
    from ppl_models import bundled
    from ppl_models.lm import LMConfig, random_lm, save_pretrained
    from ppl_models.rewards.prm import PRMConfig, random_prm, save_prm
    from ppl_models.scale.job import _setup

    tok = bundled.load_lm().tokenizer
    save_prm(random_prm(PRMConfig(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                  lm_features=True), seed=1, tokenizer=tok, lm=bundled.load_verifier()),
             tmp_path / "prm")
    s = _setup(ScaleConfig(num_problems=1, prm="learned", prm_checkpoint=str(tmp_path / "prm")).validate())
    reward = s.reward_for(s.problems[0])
    ver = bundled.load_verifier()
    for a, b in zip(jax.tree.leaves(reward.lm.params), jax.tree.leaves(ver.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = random_lm(LMConfig.llama(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                     max_position_embeddings=256, eos_token_id=1), seed=3, tokenizer=tok)
    save_pretrained(other, tmp_path / "lm")
    save_prm(random_prm(PRMConfig(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                  lm_features=True), seed=1, tokenizer=tok, lm=other), tmp_path / "prm2")
    s = _setup(ScaleConfig(num_problems=1, prm="learned", prm_checkpoint=str(tmp_path / "prm2"),
                           prm_features_lm=str(tmp_path / "lm")).validate())
    assert s.reward_for(s.problems[0]).lm.config.hidden_size == 16
    # The PRM folder records the LM it reads: another one is an error, not nonsense scores.
    with pytest.raises(ValueError, match="token features of the LM"):
        _setup(ScaleConfig(num_problems=1, prm="learned", prm_checkpoint=str(tmp_path / "prm"),
                           prm_features_lm=str(tmp_path / "lm")).validate())
    with pytest.raises(ValueError, match="token features of the LM"):  # the bundled PRM with the generator LM
        from ppl_models.rewards.prm import load_prm

        load_prm(bundled.PRM_DIR, lm=bundled.load_lm())
    # A flag that would be ignored is an error.
    with pytest.raises(ValueError, match="prm_features_lm: only read with prm_checkpoint"):
        ScaleConfig(prm_features_lm=str(tmp_path / "lm")).validate()
    with pytest.raises(ValueError, match="prm_checkpoint: only read"):
        ScaleConfig(prm="oracle", prm_checkpoint=str(tmp_path / "prm")).validate()


def test_cli_bad_option_exits_2(capsys):
    from ppl_models.cli import main

    assert main(["scale", "--methods", "nope", "--quiet"]) == 2
    assert "methods" in capsys.readouterr().err
    assert main(["scale", "--checkpoint", "/nonexistent/folder", "--quiet"]) == 2
    assert main(["scale", "--devices", "10000", "--quiet"]) == 2
    assert "devices: asked for 10000" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_run():
    cfg = ScaleConfig(methods=("best_of_n", "majority_vote", "particle_filter", "beam_search"), budgets=(1, 2, 4),
                      num_problems=3, prm="oracle", seed=1)
    return run_scale(cfg, progress=False)


def test_small_run_outputs(small_run, tmp_path):
    from ppl_models.scaling.data import read_scale_json

    res = small_run
    assert res.num_problems == 3
    for name, c in res.methods.items():
        assert list(c.budgets) == [1, 2, 4] or name == "beam_search"
        assert all(0 <= k <= 3 for k in c.correct)
        assert all(t > 0 for t in c.generated_tokens)
    # Best-of-n draws nested subsets of one pool: its tokens grow linearly with the budget.
    bon = res.methods["best_of_n"]
    assert bon.generated_tokens[2] == pytest.approx(4 * res.tokens_per_rollout, rel=0.5)
    # Coverage of the pool is monotone in the budget and bounds best-of-n (same pool).
    cov = res.coverage["correct"]
    assert cov == sorted(cov) and all(b <= c for b, c in zip(bon.correct, cov))
    # The exact oracle ranks right rollouts above wrong ones: within-problem AUC 1 here (ties come only
    # from unfinished chains that are right so far, or a slip that lands on the right answer).
    assert len(res.reward_auc) == 3 and any(a is not None for a in res.reward_auc)
    assert all(a == 1.0 for a in res.reward_auc if a is not None)
    path = write_json(res, tmp_path / "scale.json")
    curves = read_scale_json(path)  # the reader of `ppl analyze` accepts it
    assert set(curves) == set(res.methods)
    obj = json.loads(path.read_text())
    for m in obj["methods"].values():
        assert len(m["budgets"]) == len(m["accuracy"]) == len(m["ci_low"]) == len(m["ci_high"]) == len(m["tokens"])
        assert all(lo <= a <= hi for a, lo, hi in zip(m["accuracy"], m["ci_low"], m["ci_high"]))
    assert "summary" in obj and "coverage" in obj
    png = plot(res, tmp_path / "scale.png")
    assert png.stat().st_size > 10_000
    table = format_table(res)
    assert "particle_filter" in table and "coverage" in table and "within a problem: AUC 1.00" in table
    assert "budgets_at_or_above" in summary(res)
    # Paired against the particle filter on the same problems, and compute as FLOPs.
    assert "exact McNemar p-value" in table and "FLOPs per problem" not in table
    flops_table = format_table(res, x="flops")
    assert "FLOPs per problem" in flops_table and "generated tokens per problem" not in flops_table
    assert f"{res.methods['best_of_n'].flops[0]:.3g}" in flops_table
    assert set(obj["paired"]["tests"]) == {"best_of_n", "majority_vote", "beam_search"}
    assert obj["paired"]["tests"]["best_of_n"]["1"]["n"] == 3
    for m in obj["methods"].values():
        assert len(m["flops"]) == len(m["budgets"]) and all(f > 0 for f in m["flops"])
    assert plot(res, tmp_path / "flops.png", x="flops").stat().st_size > 10_000
    with pytest.raises(ValueError, match="x: expected one of"):
        format_table(res, x="seconds")
    # The table and plot say which reward and particle-filter options made them.
    cfg = dataclasses.replace(res.config, prm="noisy-oracle", prm_noise=8.0, tau=8.0, pf_select="vote")
    assert "noisy-oracle (noise 8); particle filter tau 8, vote answer" in format_table(dataclasses.replace(res, config=cfg))
    cfg = dataclasses.replace(res.config, prm="learned", prm_checkpoint="/somewhere/my-prm/")
    assert "reward: learned from my-prm;" in format_table(dataclasses.replace(res, config=cfg))


@pytest.mark.slow  # 20 s; determinism is also what test_resume and test_sharded compare against
def test_run_is_deterministic_for_a_seed(small_run):
    again = run_scale(small_run.config, progress=False)
    for name, c in small_run.methods.items():
        d = again.methods[name]
        assert c.correct == d.correct and c.generated_tokens == d.generated_tokens and c.prm_calls == d.prm_calls


def test_json_round_trip_and_replot(small_run, tmp_path, capsys):
    from ppl_models.scale import ScaleResults
    from ppl_models.cli import main

    obj = small_run.to_json()
    again = ScaleResults.from_json(json.loads(json.dumps(obj))).to_json()
    assert again == json.loads(json.dumps(obj))
    path = write_json(small_run, tmp_path / "s.json")
    assert main(["scale", "--from-json", str(path), "--plot", str(tmp_path / "re.png")]) == 0
    assert "particle_filter" in capsys.readouterr().out and (tmp_path / "re.png").is_file()
    assert main(["scale", "--from-json", str(path), "--no-plot", "--x", "flops"]) == 0
    assert "FLOPs per problem" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"methods": {}}')
    assert main(["scale", "--from-json", str(bad)]) == 2


@pytest.mark.slow  # 50-90 s (three filters compiled); the engine under it is tested by enumeration in tests/lm/test_bounds.py
def test_bounds_per_filter_in_the_table_json_and_resume(tmp_path):
    """ppl scale --bounds: per problem, every filter's SMC and conditional SMC runs on the same
    exact samples; the summary is in the JSON (round trip) and the table; a problem whose bounds
    lines are missing is not complete (a resumed run computes them)."""
    from ppl_models.scale.job import ScaleResults, bounds_filters, complete_problems
    from ppl_models.scale.report import format_table

    cfg = ScaleConfig(methods=("best_of_n",), budgets=(1,), num_problems=2, prm="oracle", seed=3,
                      bounds_particles=4, bounds_runs=2)
    records = []
    res = run_scale(cfg, progress=False, on_problems=records.extend)
    assert bounds_filters(cfg) == ("bootstrap", "reward", "learned")
    assert set(res.bounds) == {"bootstrap", "reward", "learned"}
    for name, b in res.bounds.items():
        assert b["num_particles"] == 4 and len(b["rows"]) == 2
        assert all(len(r["lower"]) == len(r["upper"]) == len(r["right"]) == 2 for r in b["rows"])
        assert np.isfinite(b["gap"]) and 0.0 <= b["accuracy"] <= 1.0 + 1e-6
        # exact samples of a target with the oracle's 1e-4 floor: the bounds bracket a log Z
        # near log P(right), which is far above log 1e-4
        assert all(min(r["upper"]) > np.log(1e-4) for r in b["rows"]), (name, b["rows"])
    text = format_table(res)
    assert "log Z bounds" in text and "learned" in text
    back = ScaleResults.from_json(json.loads(json.dumps(res.to_json())))
    assert back.bounds == json.loads(json.dumps(res.bounds))
    partial = [r for r in records if not (r["kind"] == "bounds" and r["problem"] == 1 and r["filter"] == "learned")]
    assert sorted(complete_problems(cfg, partial)) == [0]
    assert sorted(complete_problems(cfg, records)) == [0, 1]
    assert bounds_filters(dataclasses.replace(cfg, bounds_particles=0)) == ()
