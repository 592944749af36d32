"""``ppl analyze`` on ``ppl scale`` JSON: the per-problem block, allocation per difficulty bin,
accuracy at matched tokens."""

import argparse
import json

import numpy as np
import pytest

from ppl_models.scaling import cli
from ppl_models.scaling.allocation import allocate_from_outcomes
from ppl_models.scaling.data import InputError, read_scale_json, read_scale_problems

BUDGETS = [1, 2, 4, 8]
# Four bins of ten problems, hardest first: problems solved (out of 10) per budget.
#   bin 0 (pool pass@1 0.0): nothing solves anything             -> skip (budget 0)
#   bin 1 (0.1): beam search 2, 2, 8, 8; best-of-N 0, 0, 2, 2    -> beam_search at 4
#   bin 2 (0.4): beam search 5, 10, 10, 10; best-of-N 3, 6, 6, 6 -> beam_search at 2
#   bin 3 (0.9): beam search 6, 10, 10, 10; best-of-N 10 always  -> best_of_n at 1
# The default total is the median budget, 3 per problem (120 in all): the allocation spends
# 0 + 40 + 20 + 10 = 70 and solves 0 + 8 + 10 + 10 = 28 of 40 (0.7); uniform best-of-N at the
# largest budget that fits (2) solves 0 + 0 + 6 + 10 = 16 (0.4).
SOLVED = {
    "best_of_n": [[0, 0, 0, 0], [0, 0, 2, 2], [3, 6, 6, 6], [10, 10, 10, 10]],
    "beam_search": [[0, 0, 0, 0], [2, 2, 8, 8], [5, 10, 10, 10], [6, 10, 10, 10]],
}
POOL = [0.0, 0.1, 0.4, 0.9]


def _problems():
    """``pool_success [40]`` and ``{method: {budget: [40 0/1]}}`` from the table above."""
    pool = np.repeat(POOL, 10)
    solved = {}
    for name, per_bin in SOLVED.items():
        solved[name] = {}
        for g, b in enumerate(BUDGETS):
            # bin k's first `count` problems are solved (nested in the budget, as a pool is)
            solved[name][str(b)] = [int(i < per_bin[k][g]) for k in range(4) for i in range(10)]
    return pool.tolist(), solved


def _write(path, problems=True, **edit):
    pool, solved = _problems()
    methods = {}
    for name, per_budget in solved.items():
        acc = [float(np.mean(per_budget[str(b)])) for b in BUDGETS]
        per_token = 100.0 if name == "best_of_n" else 110.0
        methods[name] = {"budgets": BUDGETS, "accuracy": acc,
                         "tokens": [per_token * b for b in BUDGETS]}
    obj = {"methods": methods, "num_problems": 40}
    if problems:
        obj["problems"] = {"pool_success": pool, "solved": solved}
    for field, fn in edit.items():
        fn(obj)
    path.write_text(json.dumps(obj))
    return path


def _args(*argv):
    parser = argparse.ArgumentParser()
    cli.setup(parser)
    return parser.parse_args(list(argv))


def test_reader_keeps_old_api_and_reads_block(tmp_path):
    path = _write(tmp_path / "s.json")
    methods = read_scale_json(path)  # unchanged: {name: MethodCurve}
    assert set(methods) == {"best_of_n", "beam_search"}
    pb = read_scale_problems(path, methods)
    assert pb.num_problems == 40
    budgets, outcome = pb.solved["beam_search"]
    assert budgets.tolist() == BUDGETS and outcome.shape == (4, 40)
    assert outcome[2, 10:20].sum() == 8
    assert read_scale_problems(_write(tmp_path / "old.json", problems=False)) is None


def _set(*keys, value):
    def fn(obj):
        d = obj
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return fn


def _del(*keys):
    def fn(obj):
        d = obj
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return fn


@pytest.mark.parametrize("edit,match", [
    (_set("problems", value=[1, 2]), r"field 'problems': expected an object"),
    (_del("problems", "solved"), r"field 'problems.solved': missing"),
    (_set("problems", "pool_success", value=[0.5] * 39),
     r"'problems.pool_success': has 39 entries, 'num_problems' is 40"),
    (_set("problems", "pool_success", 7, value=1.5),
     r"'problems.pool_success'\[7\]: expected a number in \[0, 1\], got 1.5"),
    (_set("problems", "solved", "beam_search", "4", value=[1] * 39),
     r"'problems.solved'\['beam_search'\]\['4'\]: expected a list of 40 0/1 entries"),
    (_set("problems", "solved", "best_of_n", "2", 5, value=2),
     r"'problems.solved'\['best_of_n'\]\['2'\]\[5\]: expected 0 or 1, got 2"),
    (_set("problems", "solved", "best_of_n", "two", value=[0] * 40),
     r"'problems.solved'\['best_of_n'\]\['two'\]: the key must be a positive integer budget"),
    (_set("problems", "solved", "best_of_n", "8", 0, value=1),
     r"'problems.solved'\['best_of_n'\]\['8'\]: solves 0.4750 .* 'methods\['best_of_n'\].accuracy' at budget 8"),
])
def test_bad_problem_block_names_the_field(tmp_path, capsys, edit, match):
    path = _write(tmp_path / "s.json", bad=edit)
    with pytest.raises(InputError, match=match):
        read_scale_problems(path, read_scale_json(path))
    assert cli.run(_args(str(path), "--no-plots")) == 2
    assert "problems" in capsys.readouterr().err


def _outcomes():
    pool, solved = _problems()
    out = np.array([[solved[m][str(b)] for b in BUDGETS] for m in SOLVED], float)
    return out, np.asarray(pool)


def test_allocation_per_bin_known_answer():
    outcomes, pool = _outcomes()
    alloc, tab = allocate_from_outcomes(outcomes, BUDGETS, pool, 3.0, num_bins=4)
    assert tab.counts.tolist() == [10] * 4 and tab.budgets.tolist() == [0] + BUDGETS
    # skip the hopeless bin, search the hard ones, best-of-N the easy one (Snell et al.)
    assert alloc.budget.tolist() == [0, 4, 2, 1]
    assert alloc.method[1:].tolist() == [1, 1, 0]  # beam_search, beam_search, best_of_n
    assert alloc.accuracy == pytest.approx(0.7) and alloc.spent == pytest.approx(1.75)
    assert alloc.uniform_budget == 2 and alloc.uniform_accuracy == pytest.approx(0.4)
    assert alloc.gain == pytest.approx(0.3)
    assert alloc.gain_interval[0] <= alloc.gain_interval[1]
    # Held out, half a bin of 2/10 solves carries little signal: lower, but still a gain.
    assert 0.1 < alloc.heldout_gain <= 0.3 + 1e-9
    # A budget never measured for a method is never chosen (NaN = not run).
    partial = outcomes.copy()
    partial[1, 2] = np.nan  # beam search not run at budget 4
    alloc2, _ = allocate_from_outcomes(partial, BUDGETS, pool, 3.0, num_bins=4,
                                       num_bootstrap=0, num_splits=0)
    assert alloc2.budget[1] == 8 and alloc2.method[1] == 1
    assert alloc2.accuracy == pytest.approx(0.7)


def test_matched_tokens_interpolates_in_log_tokens():
    from ppl_models.scaling.data import MethodCurve

    def curve(name, b, a, t):
        return MethodCurve(name, np.array(b, float), np.array(a), None, None,
                           None if t is None else np.array(t, float))

    methods = {
        "majority_vote": curve("majority_vote", [1, 2], [0.1, 0.2], None),
        "particle_filter": curve("particle_filter", [1, 2, 4], [0.2, 0.4, 0.6], [150, 300, 620]),
        "best_of_n": curve("best_of_n", [1, 2, 4, 8], [0.1, 0.2, 0.3, 0.4], [100, 200, 400, 800]),
    }
    mt = cli.matched_tokens(methods)
    assert mt["reference"] == "best_of_n" and mt["tokens"] == [100, 200, 400, 800]
    assert mt["without_tokens"] == ["majority_vote"]
    pf = mt["accuracy"]["particle_filter"]
    frac = np.log(200 / 150) / np.log(2)  # 200 between 150 and 300 in log tokens
    frac2 = np.log(400 / 300) / np.log(620 / 300)
    assert pf[0] is None and pf[3] is None  # 100 < 150 and 800 > 620: no extrapolation
    assert pf[1] == pytest.approx(0.2 + 0.2 * frac) and pf[2] == pytest.approx(0.4 + 0.2 * frac2)
    assert [d["method"] for d in mt["best"]] == ["best_of_n", "particle_filter",
                                                 "particle_filter", "best_of_n"]
    # within 5% of the end of the range: the end's accuracy; the reference can be chosen
    assert cli.matched_tokens(methods, "particle_filter")["accuracy"]["best_of_n"][2] == \
        pytest.approx(0.3 + 0.1 * np.log(620 / 400) / np.log(2))
    methods["particle_filter"] = curve("particle_filter", [1, 2], [0.2, 0.4], [150, 770])
    assert cli.matched_tokens(methods)["accuracy"]["particle_filter"][3] == pytest.approx(0.4)
    assert cli.matched_tokens({"m": methods["majority_vote"]}) is None


def test_analyze_scale_json_end_to_end(tmp_path, capsys):
    path = _write(tmp_path / "s.json")
    out = tmp_path / "out.json"
    assert cli.run(_args(str(path), "--json", str(out), "--bins", "4", "--draws", "100",
                         "--chains", "1", "--plots", str(tmp_path / "p"))) == 0
    rep = json.loads(out.read_text())
    al = rep["allocation"]
    assert al["total_budget_per_problem"] == 3 and al["baseline"] == "best_of_n"
    assert [(b["method"], b["budget"]) for b in al["bins"]] == [
        (None, 0), ("beam_search", 4), ("beam_search", 2), ("best_of_n", 1)]
    assert al["gain"] == pytest.approx(0.3) and al["uniform_budget"] == 2
    assert al["heldout_gain_ci"][0] <= al["heldout_gain_ci"][1] and "heldout_gain" in al
    assert [b["problems"] for b in al["bins"]] == [10] * 4
    assert al["bins"][3]["pool_success"] == [0.9, 0.9]
    mt = rep["matched_tokens"]
    assert mt["reference"] == "best_of_n"
    # beam search at 110 tokens per unit budget: at 200 tokens (bon N=2), between its N=1 and
    # N=2 in log tokens
    f = np.log(200 / 110) / np.log(2)
    acc_bs = [np.sum(row) / 40 for row in zip(*SOLVED["beam_search"])]
    assert mt["accuracy"]["beam_search"][1] == pytest.approx(acc_bs[0] + f * (acc_bs[1] - acc_bs[0]))
    assert rep["methods"]["best_of_n"]["tokens"] == [100, 200, 400, 800]
    assert (tmp_path / "p" / "accuracy_vs_tokens.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "compute-optimal allocation" in text and "held-out gain" in text
    assert "matched generated tokens" in text
    # best-of-N@8 solves 18/40; beam search first reaches that at budget 2 (22/40): ratio 8/2
    br = rep["budget_ratio"]["beam_search"]
    assert br["ratio"] == 4 and br["ci_low"] <= 4 <= br["ci_high"] and br["reference_budget"] == 8
    assert "budget ratio: best_of_n@8 solves 0.4500" in text
    # an explicit total budget
    assert cli.run(_args(str(path), "--json", str(out), "--bins", "4", "--total-budget", "1",
                         "--no-plots", "--draws", "100", "--chains", "1")) == 2  # refused: the file exists
    assert cli.run(_args(str(path), "--json", str(out), "--bins", "4", "--total-budget", "1",
                         "--no-plots", "--draws", "100", "--chains", "1", "--overwrite")) == 0
    al = json.loads(out.read_text())["allocation"]
    assert al["total_budget_per_problem"] == 1 and al["spent_per_problem"] <= 1
