"""``ppl rank`` through its setup/run pair: a simulated log end to end, and input errors that
stop before any compute."""

import argparse
import csv
import json

import numpy as np
import pytest

from ppl_models import judges
from ppl_models.judges import cli


def _run(argv):
    p = argparse.ArgumentParser(prog="ppl rank")
    cli.setup(p)
    args = p.parse_args(argv)
    return args.func(args)


@pytest.mark.slow  # 7 s statistical recovery; the ppl rank paths are tested in test_cli_inputs.py
def test_rank_end_to_end_recovers_order_and_position_bias(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = np.array([1.2, 0.4, 0.0, -1.5])
    names = ["alpha", "beta", "gamma", "delta"]
    recs = judges.simulate_battles(rng, truth, 1500, ties="davidson", log_nu=-0.5, position_bias=0.5,
                                   names=names)
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["model_a", "model_b", "winner"])
        w.writeheader()
        w.writerows(recs)
    out_json, out_png = tmp_path / "r.json", tmp_path / "f.png"
    rc = _run([str(path), "--position-bias", "--chains", "2", "--warmup", "250", "--samples", "250",
               "--models", "alpha,beta,gamma,delta,unseen", "--json", str(out_json), "--plot", str(out_png)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "alpha" in cap.out and "unseen" in cap.err  # a model in no battle is reported
    d = json.loads(out_json.read_text())
    order = [m["name"] for m in d["models"]]
    assert [n for n in order if n != "unseen"] == names and "unseen" in order
    by = {m["name"]: m for m in d["models"]}
    assert by["unseen"]["num_battles"] == 0 and by["unseen"]["ci_high"] - by["unseen"]["ci_low"] > 300
    # Elo-scale differences: truth 0.8 logits = 139 points between alpha and beta
    diff = by["alpha"]["rating"] - by["beta"]["rating"]
    assert abs(diff - 0.8 * 400 / np.log(10)) < 60
    pb = d["params"]["position_bias"]
    assert pb["ci_low"] < 0.5 < pb["ci_high"] and pb["ci_low"] > 0.2
    assert d["pairwise"]["p_win"][0][3] > 0.8
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "text, ext, fragment",
    [
        ("model_a,model_b,winner\na,b,model_a\nc,c,tie\n", "csv", "line 3, fields 'model_a'/'model_b'"),
        ("model_a,model_b,winner,count\na,b,tie,-2\n", "csv", "line 2, field 'count': negative"),
        ("", "jsonl", "empty"),
        ('{"model_a": "a", "model_b": "b", "winner": "model_c"}\n', "jsonl", "line 1, field 'winner'"),
        ("model_a,model_b,winner,extra\na,b,tie,1\n", "csv", "unknown column(s) ['extra']"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, text, ext, fragment):
    path = tmp_path / f"bad.{ext}"
    path.write_text(text)
    assert _run([str(path)]) == 2
    assert fragment in capsys.readouterr().err


def test_bad_options_exit_2(tmp_path, capsys):
    path = tmp_path / "ok.csv"
    path.write_text("model_a,model_b,winner\na,b,tie\n")
    assert _run([str(path), "--judges"]) == 2
    assert "judge" in capsys.readouterr().err
    assert _run([str(path), "--model", "thurstone", "--ties", "davidson"]) == 2
    assert _run([str(path), "--anchor", "zzz"]) == 2
    assert _run([str(path), "--chains", "0"]) == 2
