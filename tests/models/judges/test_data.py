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


def test_binned_covariates_keep_bin_means_and_merge_rows():
    from ppl_models.judges.data import bin_covariates

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 1))
    b = bin_covariates(x, 8)
    assert len(np.unique(b)) == 8
    assert abs(b.mean() - x.mean()) < 1e-12  # bin means keep the column's mean
    for v in np.unique(b):  # each value is the mean of the values it replaced
        assert v == pytest.approx(x[b == v].mean())
    few = np.repeat(np.array([[0.0], [1.0], [2.0]]), 10, axis=0)
    np.testing.assert_array_equal(bin_covariates(few, 8), few)  # few distinct values: kept exactly
    recs = [{"model_a": "a", "model_b": "b", "winner": "model_a", "len": float(v)} for v in x[:, 0]]
    battles = battles_from_records(recs, covariates=["len"])
    assert aggregate(battles).num_rows == 2000 and aggregate(battles, covariate_bins=8).num_rows == 8
