"""``ppl analyze``: input validation naming row and field, and end-to-end runs."""

import argparse
import json

import numpy as np
import pytest

from ppl_models.scaling import cli
from ppl_models.scaling.data import InputError, read_samples_csv, read_scale_json

from . import sim


def _args(*argv):
    parser = argparse.ArgumentParser()
    cli.setup(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("body,match", [
    ("problem_id,sample\n", r"row 1 \(header\): missing column\(s\) \['correct'\]"),
    ("problem_id,sample,correct\n", "no data rows"),
    ("problem_id,sample,correct\na,0,1\na,1,2\n", r"row 3 \(problem_id='a'\), field 'correct'"),
    ("problem_id,sample,correct\na,0,1\na,0,0\n", r"row 3 .*'sample': duplicate .*row 2"),
    ("problem_id,sample,correct,accepted\na,0,1,yes\n", r"row 2 .*field 'accepted'"),
    ("problem_id,sample,correct,tokens\na,0,1,-5\n", r"row 2 .*field 'tokens'"),
    ("problem_id,sample,correct\n,0,1\n", r"row 2, field 'problem_id': empty"),
    ("problem_id,sample,correct\na,0,1,7\n", r"row 2: more fields"),
])
def test_csv_errors_name_row_and_field(tmp_path, body, match):
    path = tmp_path / "r.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=match):
        read_samples_csv(path)


def test_csv_reading(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("problem_id,sample,correct,accepted,tokens\nx,0,1,1,10\nx,1,0,1,12\n"
                    "y,0,0,0,7\n\n")
    t = read_samples_csv(path)
    assert t.problem_ids == ["x", "y"]
    n, c = t.counts()
    assert n.tolist() == [2, 1] and c.tolist() == [1, 0]
    assert t.accepted.tolist() == [1, 1, 0] and t.tokens.tolist() == [10, 12, 7]


def _scale_json(path, **overrides):
    m = {"budgets": [1, 2, 4, 8, 16, 32], "accuracy": [0.2, 0.33, 0.47, 0.58, 0.65, 0.69],
         "ci_low": [0.15, 0.28, 0.42, 0.53, 0.6, 0.64],
         "ci_high": [0.25, 0.38, 0.52, 0.63, 0.7, 0.74], "tokens": [100, 200, 400, 800, 1600, 3200]}
    m.update(overrides)
    b = {"budgets": [1, 2, 4, 8, 16, 32], "accuracy": [0.2, 0.3, 0.38, 0.44, 0.48, 0.5]}
    path.write_text(json.dumps({"methods": {"particle_filter": m, "best_of_n": b}}))
    return path


@pytest.mark.parametrize("override,match", [
    ({"accuracy": [0.2, 0.3]}, r"method 'particle_filter', field 'accuracy': has 2 entries"),
    ({"accuracy": [0.2, 0.3, 0.4, 0.5, 1.5, 0.6]}, r"field 'accuracy'\[4\]: 1.5 outside"),
    ({"budgets": [1, 2, 4, 8, 16, "x"]}, r"field 'budgets'\[5\]: expected a finite number"),
    ({"budgets": None}, r"field 'budgets': expected a list"),
])
def test_json_errors_name_method_and_field(tmp_path, override, match):
    with pytest.raises(InputError, match=match):
        read_scale_json(_scale_json(tmp_path / "s.json", **override))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_scale_json(bad)


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("problem_id,sample,correct\na,0,x\n")
    assert cli.run(_args(str(path))) == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "'correct'" in err


@pytest.mark.slow  # 15 s; tests/models/scaling/test_scale_json.py runs ppl analyze on a scale JSON end to end
def test_analyze_scale_json(tmp_path, capsys):
    path = _scale_json(tmp_path / "s.json")
    out = tmp_path / "out.json"
    assert cli.run(_args(str(path), "--json", str(out), "--plots", str(tmp_path / "p"),
                         "--draws", "300")) == 0
    rep = json.loads(out.read_text())
    sat = rep["methods"]["particle_filter"]["saturation"]
    assert 0.65 < sat["parameters"]["f_max"]["mean"] < 0.8
    assert rep["best_method_per_budget"][-1]["method"] == "particle_filter"
    assert (tmp_path / "p" / "saturation.png").stat().st_size > 1000
    assert "recommendation" in capsys.readouterr().out


@pytest.mark.slow
def test_analyze_samples_csv_end_to_end(tmp_path, capsys):
    path = sim.write_csv(tmp_path / "r.csv")
    out = tmp_path / "out.json"
    assert cli.run(_args(str(path), "--json", str(out), "--draws", "300")) == 0
    rep = json.loads(out.read_text())
    pk = rep["pass_at_k"]
    assert set(pk) >= {"k", "estimate", "ci_low", "ci_high"}
    _, problem, correct, *_ = sim.samples(0)
    assert pk["estimate"][0] == pytest.approx(correct.mean())
    assert np.all(np.diff(pk["estimate"]) >= 0)
    for key in ("coverage_beta_binomial", "coverage_power_law", "verifier", "saturation",
                "allocation"):
        assert key in rep, key
    assert rep["verifier"]["parameters"]["c"]["ci_low"] < sim.C_TRUE
    assert (tmp_path / "r_plots" / "coverage.png").exists()
    assert (tmp_path / "r_plots" / "verifier.png").exists()
    text = capsys.readouterr().out
    assert "pass@k" in text and "A_inf" in text and "allocation" in text


def test_outputs_checked_before_compute_and_ctrl_c(tmp_path, capsys, monkeypatch):
    path = sim.write_csv(tmp_path / "r.csv")
    (tmp_path / "taken.json").write_text("{}")
    assert cli.run(_args(str(path), "--json", str(tmp_path / "taken.json"))) == 2
    assert "--json" in capsys.readouterr().err
    (tmp_path / "plots").write_text("a file")
    assert cli.run(_args(str(path), "--plots", str(tmp_path / "plots"))) == 2
    assert "is a file" in capsys.readouterr().err

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "analyze_samples", interrupted)
    out = tmp_path / "new.json"
    assert cli.run(_args(str(path), "--json", str(out), "--no-plots")) == 130
    assert "interrupted; nothing written" in capsys.readouterr().err and not out.exists()
