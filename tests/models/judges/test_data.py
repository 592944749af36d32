"""Battle-log reading, validation (errors name the row and field) and aggregation."""

import json

import numpy as np
import pytest

from ppl_models.judges import BattleLogError, aggregate, battles_from_records, read_battles


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


CSV = """model_a,model_b,winner
a,b,model_a
b,a,model_b
a,b,tie
a,c,tie (bothbad)
a,b,model_a
"""


def test_csv_and_jsonl_read_the_same_battles(tmp_path):
    rows = [dict(zip(["model_a", "model_b", "winner"], line.split(","))) for line in CSV.splitlines()[1:]]
    jl = "\n".join(json.dumps(r) for r in rows) + "\n"
    b1 = read_battles(_write(tmp_path, "x.csv", CSV))
    b2 = read_battles(_write(tmp_path, "x.jsonl", jl))
    b3 = read_battles(_write(tmp_path, "x.json", json.dumps(rows)))
    for b in (b2, b3):
        assert b.models == b1.models == ("a", "b", "c")
        np.testing.assert_array_equal(b.outcome, b1.outcome)
        np.testing.assert_array_equal(b.first, b1.first)
    np.testing.assert_array_equal(b1.outcome.argmax(1), [0, 1, 2, 2, 0])


def test_aggregation_sums_counts_per_ordered_pair():
    recs = [
        {"model_a": "a", "model_b": "b", "winner": "model_a"},
        {"model_a": "a", "model_b": "b", "winner": "model_a", "count": 3},
        {"model_a": "a", "model_b": "b", "winner": "tie"},
        {"model_a": "b", "model_b": "a", "winner": "model_a"},
        {"model_a": "a", "model_b": "c", "winner": "model_b", "count": 0},
    ]
    c = aggregate(battles_from_records(recs))
    table = {(c.models[f], c.models[s]): tuple(n) for f, s, n in zip(c.first, c.second, c.counts)}
    assert table == {("a", "b"): (4.0, 0.0, 1.0), ("b", "a"): (1.0, 0.0, 0.0)}
    # 'c' took part only in a zero-count row: kept as a model and reported, not dropped
    assert c.models == ("a", "b", "c")
    assert c.unused_models() == ("c",)
    np.testing.assert_array_equal(c.battles_per_model(), [6, 6, 0])


def test_models_list_keeps_models_without_battles():
    recs = [{"model_a": "a", "model_b": "b", "winner": "model_b"}]
    c = aggregate(battles_from_records(recs, models=["z", "a", "b"]))
    assert c.models == ("z", "a", "b") and c.unused_models() == ("z",)


def test_soft_outcomes_are_fractional_counts():
    recs = [
        {"model_a": "a", "model_b": "b", "p_model_a": 0.7, "p_model_b": 0.2, "p_tie": 0.1},
        {"model_a": "a", "model_b": "b", "p_model_a": 0.5, "p_model_b": 0.5, "count": 2},
    ]
    c = aggregate(battles_from_records(recs))
    np.testing.assert_allclose(c.counts, [[1.7, 1.2, 0.1]], rtol=1e-6)


def test_judges_and_covariates_split_rows():
    recs = [
        {"model_a": "a", "model_b": "b", "winner": "model_a", "judge": "j1", "len": 1.0},
        {"model_a": "a", "model_b": "b", "winner": "model_a", "judge": "j2", "len": 1.0},
        {"model_a": "a", "model_b": "b", "winner": "model_b", "judge": "j2", "len": 1.0},
        {"model_a": "a", "model_b": "b", "winner": "model_b", "judge": "j2", "len": -2.0},
    ]
    c = aggregate(battles_from_records(recs, covariates=["len"]))
    assert c.judges == ("j1", "j2") and c.covariate_names == ("len",)
    assert c.num_rows == 3
    assert sorted(map(tuple, np.c_[c.judge, c.covariates[:, 0], c.counts[:, :2]].tolist())) == [
        (0, 1.0, 1.0, 0.0), (1, -2.0, 0.0, 1.0), (1, 1.0, 1.0, 1.0)]


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("model_a,model_b,winner\na,b,model_a\nb,b,model_b\n", ["line 3", "model_a", "compared with itself"]),
        ("model_a,model_b,winner\na,b,draw\n", ["line 2", "'winner'", "draw"]),
        ("model_a,model_b,winner,count\na,b,tie,-1\n", ["line 2", "'count'", "negative"]),
        ("model_a,model_b,winner,count\na,b,tie,nan\n", ["line 2", "'count'", "NaN"]),
        ("model_a,model_b,winner\na,,tie\n", ["line 2", "'model_b'", "missing"]),
        ("model_a,model_b,winner,colour\na,b,tie,red\n", ["line 2", "unknown column", "colour"]),
        ("model_x,model_b,winner\na,b,tie\n", ["line 2", "missing column", "model_a"]),
        ("model_a,model_b,winner\n", ["no battle rows"]),
        ("", ["empty"]),
        ("model_a,model_b,p_model_a,p_model_b\na,b,0.7,0.7\n", ["line 2", "sum to"]),
        ("model_a,model_b,p_model_a,p_model_b\na,b,1.5,-0.5\n", ["line 2", "'p_model_a'", "[0, 1]"]),
    ],
)
def test_bad_csv_errors_name_the_row_and_field(tmp_path, text, fragments):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(BattleLogError) as e:
        read_battles(path)
    for f in fragments:
        assert f in str(e.value), (f, str(e.value))


def test_bad_jsonl_errors(tmp_path):
    good = json.dumps({"model_a": "a", "model_b": "b", "winner": "tie"})
    with pytest.raises(BattleLogError, match="line 2: invalid JSON"):
        read_battles(_write(tmp_path, "x.jsonl", good + "\n{oops\n"))
    nan = '{"model_a": "a", "model_b": "b", "winner": "tie", "count": NaN}'
    with pytest.raises(BattleLogError, match=r"line 2, field 'count'"):
        read_battles(_write(tmp_path, "y.jsonl", good + "\n" + nan + "\n"))
    with pytest.raises(BattleLogError, match="format"):
        read_battles(_write(tmp_path, "z.txt", good))


def test_extra_columns_can_be_ignored():
    recs = [{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": 1}]
    with pytest.raises(BattleLogError, match="tstamp"):
        battles_from_records(recs)
    b = battles_from_records(recs, extra_columns="ignore")
    assert b.models == ("a", "b")


def test_aggregate_ignores_the_judge_column_unless_asked():
    # A log whose judge column is an anonymised user id: without judge effects the rows of all
    # judges merge, exactly as if the column were absent.
    rng = np.random.default_rng(0)
    recs = [{"model_a": "abc"[i % 3], "model_b": "abc"[(i + 1) % 3], "winner": ["model_a", "model_b", "tie"][i % 3],
             "judge": f"user{rng.integers(500)}"} for i in range(300)]
    with_judge = battles_from_records(recs)
    without = battles_from_records([{k: v for k, v in r.items() if k != "judge"} for r in recs])
    merged, plain = aggregate(with_judge, by_judge=False), aggregate(without)
    assert merged.num_rows == plain.num_rows <= 9 and merged.judges == ()
    for f in ("first", "second", "counts", "judge"):
        np.testing.assert_array_equal(getattr(merged, f), getattr(plain, f))
    assert aggregate(with_judge).num_rows > 100  # by judge: about one row per battle


def test_covariate_node_rule_keeps_the_moments_of_each_cell():
    from ppl_models.judges.quadrature import covariate_nodes

    rng = np.random.default_rng(0)
    n, cells = 4000, 6
    cell = rng.integers(0, cells, n)
    w = rng.random(n)
    x = rng.gamma(2.0, 1.0, n) + cell  # skewed, a different location per cell
    x[cell == 3] = 2.5  # one value: one node
    x[cell == 4] = np.where(rng.random((cell == 4).sum()) < 0.5, 1.0, 4.0)  # two values: kept exactly
    for m in (1, 2, 3, 4):
        c, xn, wn = covariate_nodes(x[:, None], w, cell, cells, m)
        for k in range(cells):
            got = [(wn[c == k] * xn[c == k, 0] ** j).sum() for j in range(2 * m)]
            want = [(w[cell == k] * x[cell == k] ** j).sum() for j in range(2 * m)]
            np.testing.assert_allclose(got, want, rtol=1e-9)  # P = 1: degree 2m - 1 exactly
        assert (c == 3).sum() == 1 and (c == 4).sum() == min(m, 2)
        if m == 2:  # and not degree 2m: the rule is a summary, not the sample
            assert abs((wn[c == 0] * xn[c == 0, 0] ** 4).sum() / (w[cell == 0] * x[cell == 0] ** 4).sum() - 1) > 1e-3
    xs = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.5], [0.0, 2.0]]) + cell[:, None]
    c, xn, wn = covariate_nodes(xs, w, cell, cells, 3)  # P = 2: mean and covariance per cell
    for k in range(cells):
        a, b = cell == k, c == k
        assert wn[b].sum() == pytest.approx(w[a].sum())
        np.testing.assert_allclose(np.average(xn[b], 0, wn[b]), np.average(xs[a], 0, w[a]), atol=1e-9)
        np.testing.assert_allclose(np.cov(xn[b].T, aweights=wn[b], bias=True), np.cov(xs[a].T, aweights=w[a], bias=True),
                                   atol=1e-9)


@pytest.mark.slow  # 8 s
def test_per_battle_covariates_aggregate_to_pairs_times_outcomes_and_keep_the_mode():
    import jax

    from ppl_models import judges

    rng = np.random.default_rng(1)
    k, n, beta = 5, 6000, 0.6
    r = rng.normal(0, 0.7, k)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    x = rng.normal(0.3 * (a - b) / k, 1.0)  # a per-battle continuous covariate, correlated with the pair
    d = r[a] - r[b] + beta * x
    win = rng.random(n) < 1 / (1 + np.exp(-d))
    recs = [{"model_a": f"m{i}", "model_b": f"m{j}", "winner": "model_a" if y else "model_b", "len": float(v)}
            for i, j, y, v in zip(a, b, win, x)]
    battles = battles_from_records(recs, covariates=["len"])
    exact, nodes = aggregate(battles, covariate_nodes=None), aggregate(battles)
    assert exact.num_rows == n and nodes.num_rows <= k * (k - 1) * 2 * 3
    np.testing.assert_allclose(nodes.counts.sum(0), exact.counts.sum(0), rtol=1e-6)
    with jax.enable_x64(True):
        fit, coarse = ([judges.posterior_mode(judges.bradley_terry, c, ties="none") for c in (exact, nodes)],
                       judges.posterior_mode(judges.bradley_terry, aggregate(battles, covariate_nodes=1), ties="none"))
    np.testing.assert_allclose(fit[1]["rating"], fit[0]["rating"], atol=2e-3)
    assert float(fit[1]["beta"][0]) == pytest.approx(float(fit[0]["beta"][0]), abs=2e-3)
    assert float(fit[0]["beta"][0]) == pytest.approx(beta, abs=0.15)  # the exact mode is near the truth
    # one node (each cell's mean covariate) is a poor summary (wins and losses separate): the check can fail
    assert abs(float(coarse["beta"][0]) - float(fit[0]["beta"][0])) > 10 * abs(float(fit[1]["beta"][0]) - float(fit[0]["beta"][0]))
    few = battles_from_records([dict(rec, len=float(round(rec["len"]))) for rec in recs], covariates=["len"])
    exact_few, nodes_few = aggregate(few, covariate_nodes=None), aggregate(few, covariate_nodes=3)
    assert nodes_few.num_rows < exact.num_rows  # few distinct values: pairs within 3·P·m rows stay exact
    per_pair = np.bincount(exact_few.first * k + exact_few.second, minlength=k * k)

    def rows(c, pair):
        sel = c.first * k + c.second == pair
        return sorted(map(tuple, np.c_[c.covariates[sel], c.counts[sel]].tolist()))

    small = [p for p in range(k * k) if 0 < per_pair[p] <= 9]
    assert small and all(rows(nodes_few, p) == rows(exact_few, p) for p in small)  # kept exactly
    with pytest.raises(ValueError, match="covariate_nodes"):
        aggregate(battles, covariate_nodes=0)
