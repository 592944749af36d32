"""The examples run end to end (small sizes) and print what they promise."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # the example's methods are tested in their own modules
def test_linear_gaussian_example(capsys):
    assert _load("linear_gaussian").main(["--steps", "10", "--particles", "128", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    for word in ("exact log Z (Kalman)", "bootstrap", "guided", "step program", "particle Gibbs", "ArviZ"):
        assert word in out


@pytest.mark.slow  # the example's methods are tested in their own modules
def test_constrained_generation_example(capsys):
    pytest.importorskip("ppl_models.lm")
    code = _load("constrained_generation").main(["--particles", "64", "--samples", "512", "--count", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "acceptance rate" in out and "weighted fraction meeting the constraint 1.000" in out


@pytest.mark.slow  # the example's methods are tested in their own modules
def test_scaling_sampling_example(capsys):
    pytest.importorskip("ppl_models.lm")
    code = _load("scaling_sampling").main(["--problems", "3", "--rollouts", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    for rule in ("pass@B", "best-of-N", "weighted BoN", "self-consistency", "weighted majority", "RPC"):
        assert rule in out


@pytest.mark.slow  # 20 s; the methods it runs are tested in tests/scaling/test_gibbs.py
def test_scaling_mcmc_example(capsys):
    pytest.importorskip("ppl_models.lm")
    code = _load("scaling_mcmc").main(["--problems", "2", "--budget", "4", "--iterations", "1", "--max-steps", "4",
                                       "--power-steps", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    for method in ("self-consistency", "particle Gibbs", "parallel tempering", "power sampling", "swap acceptance"):
        assert method in out


@pytest.mark.slow  # the example's methods are tested in their own modules
def test_scaling_search_example(capsys):
    pytest.importorskip("ppl_models.lm")
    code = _load("scaling_search").main(["--problems", "2", "--budget", "4", "--beam-width", "2",
                                         "--max-steps", "4", "--prm", "oracle"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("best-of-N", "particle filter", "beam search", "DVTS"):
        assert name in out


def test_scaling_judge_selection_example(capsys, tmp_path):
    out_png = tmp_path / "judge.png"
    code = _load("scaling_judge_selection").main([
        "--datasets", "16", "--test", "8", "--kmax", "64", "--dim", "8", "--train", "32",
        "--k-temp", "16", "--overlaps", "0.8", "--out", str(out_png)])
    out = capsys.readouterr().out
    assert code == 0, out
    for word in ("teacher as judge", "log-log slope", "misspecified judge", "optimal k =", "optimal T ="):
        assert word in out
    assert out_png.stat().st_size > 10_000


def test_reward_models_example(capsys):
    pytest.importorskip("ppl_models.lm")
    code = _load("reward_models").main(["--problems", "3", "--samples", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("generator log p", "verifier log p", "bundled PRM", "within-problem AUC"):
        assert name in out


@pytest.mark.slow  # the example's methods are tested in their own modules
def test_multivariate_state_space_example(capsys):
    assert _load("multivariate_state_space").main(["--steps", "20", "--particles", "256", "--runs", "8"]) == 0
    out = capsys.readouterr().out
    for line in ("exact log Z (Kalman)", "one key per step", "one key per particle", "equal model (new lambdas and distributions): 0 compilations",
                 "NaN at index (5, 1) (time step 5)"):
        assert line in out


@pytest.mark.slow  # the example's methods are tested in their own modules
def test_new_method_example(capsys):
    """A method composed in one file on build_filter draws best-of-N's very rollouts."""
    pytest.importorskip("ppl_models.lm")
    code = _load("new_method").main(["--problems", "2", "--budget", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "product vote" in out and "best-of-N" in out


@pytest.mark.slow  # the bounds, CTL and A* are tested in tests/lm/test_bounds.py and tests/scaling/test_a_star.py
def test_twisted_bounds_example(capsys):
    pytest.importorskip("ppl_models.lm")
    assert _load("twisted_bounds").main(["--iterations", "50", "--runs", "50"]) == 0
    out = capsys.readouterr().out
    for word in ("CTL: surrogate", "bootstrap", "learned twist", "A*: answer", "goal reached: True"):
        assert word in out



@pytest.mark.slow  # 2.5 min; the pool, CTL and bounds are tested in tests/lm/test_bounds.py and tests/models/train
def test_bundled_twist_example(capsys):
    assert _load("bundled_twist").main(["--problems", "8", "--rollouts", "8", "--steps", "5", "--test-problems", "2",
                                        "--num-particles", "4", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    for word in ("rollouts", "CTL: surrogate", "learned twist: log loss", "log Z bounds", "bootstrap: gap"):
        assert word in out


@pytest.mark.slow  # 1-2 min; the path is tested in tests/models/scale/test_data_run.py
def test_own_model_example(capsys, tmp_path):
    assert _load("own_model").main(["--out", str(tmp_path), "--budgets", "1"]) == 0
    out = capsys.readouterr().out
    assert "accuracy on 4 problems of math.jsonl" in out and "classifier from prm" in out
