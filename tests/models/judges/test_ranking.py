"""Ranking summaries on hand-made posterior draws with known answers."""

import json

import numpy as np
import pytest

from ppl_models.judges import rank_draws, summarize, tied_groups


def test_rank_draws_counts_strictly_better_models():
    x = np.array([[0.0, 1.0, 2.0], [3.0, 1.0, 3.0]])
    np.testing.assert_array_equal(rank_draws(x), [[3, 2, 1], [1, 3, 1]])


def test_tied_groups_cut_only_where_jointly_separated():
    rng = np.random.default_rng(0)
    n = 4000
    # a >> {b, c} (b, c overlap) >> d
    x = np.c_[rng.normal(10, 0.1, n), rng.normal(5, 1, n), rng.normal(5.2, 1, n), rng.normal(0, 0.1, n)]
    groups, p_sep = tied_groups(x, np.argsort(-x.mean(0)), level=0.95)
    assert groups == [[0], [2, 1], [3]]
    assert p_sep[1] < 0.95 and p_sep[0] == 1.0 and p_sep[2] == 1.0


@pytest.fixture(scope="module")
def ranking():
    rng = np.random.default_rng(1)
    x = rng.normal([0.0, 1.0, 1.05, -2.0], 0.2, size=(2, 500, 4))
    return summarize(x, ["w", "x", "y", "z"], scale=100.0, base=1000.0, anchor=0, num_battles=[5, 6, 7, 0])


def test_summaries_match_direct_computation(ranking):
    flat = ranking.draws.reshape(-1, 4)
    assert ranking.mean[0] == pytest.approx(1000.0, abs=1e-9)  # the anchor sits at base
    np.testing.assert_allclose(ranking.mean, [1000, 1100, 1105, 800], atol=5)
    np.testing.assert_allclose(ranking.ci_low, np.quantile(flat, 0.025, axis=0))
    np.testing.assert_allclose(ranking.rank_probs.sum(1), 1.0)
    np.testing.assert_allclose(ranking.rank_probs.sum(0), 1.0)  # no exact ties in continuous draws
    assert ranking.p_rank_le[:, -1] == pytest.approx(np.ones(4))
    assert ranking.rank_probs[3, 3] == 1.0 and ranking.rank_probs[0, 2] > 0.95
    np.testing.assert_allclose(ranking.p_better + ranking.p_better.T, 1 - np.eye(4))
    assert 0.2 < ranking.p_better[1, 2] < 0.5
    # x and y overlap: same Arena display rank and the same tied group
    assert ranking.display_rank[1] == ranking.display_rank[2] == 1
    assert list(ranking.display_rank[[0, 3]]) == [3, 4]
    assert ranking.groups == [[2, 1], [0], [3]]


def test_outputs_json_arviz_and_plots(ranking, tmp_path):
    d = json.loads(ranking.to_json(str(tmp_path / "r.json")))
    assert [m["name"] for m in d["models"]] == ["y", "x", "w", "z"]
    for m in d["models"]:
        assert {"name", "rating", "ci_low", "ci_high", "rank", "p_rank_1"} <= m.keys()
        assert m["ci_low"] <= m["rating"] <= m["ci_high"]
    assert d["models"][3]["num_battles"] == 0
    idata = ranking.to_inference_data()
    assert idata.posterior["strength"].dims == ("chain", "draw", "model")
    assert list(idata.posterior["model"].values) == ["w", "x", "y", "z"]
    np.testing.assert_allclose(idata.ranking["rank_prob"].values, ranking.rank_probs)
    import arviz as az

    assert az.summary(idata, var_names=["strength"]).shape[0] == 4
    for fn, name in ((ranking.plot_forest, "f.png"), (ranking.plot_rank_heatmap, "h.png")):
        fig = fn(str(tmp_path / name))
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert "no battles" in ranking.table()


def test_bad_draws_are_rejected():
    with pytest.raises(ValueError, match="draws must be"):
        summarize(np.zeros((2, 10, 3)), ["a", "b"])
    with pytest.raises(FloatingPointError):
        summarize(np.full((1, 10, 2), np.nan), ["a", "b"])
