"""``ppl rank --input responses|rankings|scores``: errors naming the line and field before any
compute, and (slow) end-to-end runs with JSON output."""

import argparse
import json

import numpy as np
import pytest

from ppl_models.judges import cli
from ppl_models.judges.dawid_skene import simulate_judgments


def _run(argv):
    p = argparse.ArgumentParser(prog="ppl rank")
    cli.setup(p)
    args = p.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize(
    "inp, name, text, msg",
    [
        ("responses", "r.csv", "model,item,correct\na,q1,1\nb,q1,2\n", "r.csv: line 3, field 'correct'"),
        ("responses", "r.csv", "model,item\na,q1\n", "missing column(s) ['correct']"),
        ("rankings", "k.csv", "ranking\na>b\nc>c\n", "k.csv: line 3, field 'ranking[1]'"),
        ("rankings", "k.jsonl", '{"ranking": ["a", "b"], "count": -2}\n', "k.jsonl: line 1, field 'count': negative"),
        ("scores", "s.csv", "candidate,item,judge,score\nA,1,j1,0\nA,2,j1,1.5\n", "s.csv: line 3, field 'score'"),
        ("scores", "s.csv", "candidate,item,judge,score,gold\nA,1,j1,0,1\nA,1,j2,0,0\n", "line 3, field 'gold'"),
        ("scores", "s.csv", "", "the file is empty"),
    ],
)
def test_bad_inputs_fail_before_compute(tmp_path, capsys, inp, name, text, msg):
    p = tmp_path / name
    p.write_text(text)
    assert _run([str(p), "--input", inp]) == 2
    assert msg in capsys.readouterr().err


def test_bad_confusion_prior(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("candidate,item,judge,score\nA,1,j1,0\n")
    assert _run([str(p), "--input", "scores", "--confusion-prior", "2"]) == 2
    assert "--confusion-prior" in capsys.readouterr().err


@pytest.mark.slow
def test_scores_with_prior_sweep_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cand = np.repeat(np.arange(2), 50)
    conf = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.8, 0.2], [0.2, 0.8]], [[0.75, 0.25], [0.25, 0.75]]])
    _, it, jd, lb = simulate_judgments(rng, conf, len(cand), prevalence=np.array([[0.2, 0.8], [0.7, 0.3]]),
                                       candidate=cand)
    p = tmp_path / "s.csv"
    rows = ["candidate,item,judge,score"] + [f"{'AB'[cand[i]]},{i},j{j},{l}" for i, j, l in zip(it, jd, lb)]
    p.write_text("\n".join(rows) + "\n")
    out = tmp_path / "o.json"
    rc = _run([str(p), "--input", "scores", "--prior-sweep", "--chains", "2", "--warmup", "150", "--samples", "150",
               "--json", str(out), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(out.read_text())
    assert [m["name"] for m in d["models"]] == ["A", "B"]
    assert d["prior_sensitivity"]["stable"] is True and len(d["prior_sensitivity"]["priors"]) == 4
    assert "prior sensitivity" in cap.out


@pytest.mark.slow
def test_responses_and_rankings_end_to_end(tmp_path, capsys):
    p = tmp_path / "r.jsonl"
    rng = np.random.default_rng(1)
    lines = []
    for m, th in (("strong", 1.5), ("weak", -1.5), ("mid", 0.0)):
        for i in range(30):
            lines.append(json.dumps({"model": m, "item": f"q{i}", "correct": int(rng.random() < 1 / (1 + np.exp(-th)))}))
    p.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.json"
    assert _run([str(p), "--input", "responses", "--irt", "1pl", "--chains", "2", "--warmup", "150", "--samples", "150",
                 "--json", str(out), "--quiet"]) == 0
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == ["strong", "mid", "weak"]
    k = tmp_path / "k.csv"
    k.write_text("ranking,count\na>b>c,20\nb>c,10\na>c,10\nb>a>c,5\n")
    assert _run([str(k), "--input", "rankings", "--chains", "2", "--warmup", "150", "--samples", "150",
                 "--json", str(out), "--quiet"]) == 2  # refused before compute: the file exists
    assert _run([str(k), "--input", "rankings", "--chains", "2", "--warmup", "150", "--samples", "150",
                 "--json", str(out), "--quiet", "--overwrite"]) == 0
    d = json.loads(out.read_text())
    assert [m["name"] for m in d["models"]] == ["a", "b", "c"] and d["input"] == "rankings"
    capsys.readouterr()


# ------------------------------------------------------------------ battle logs from real files
FAST = ["--chains", "1", "--warmup", "60", "--samples", "60", "--quiet"]


def _log(rows, header="model_a,model_b,winner"):
    return header + "\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize("data, msg", [
    (b"model_a,model_b,winner\na,b,model_a\nb,\xff,model_b\n", "line 3: byte 0xff is not UTF-8"),
    (_log(["a,b,model_a,0", "b,c,tie,0"], "model_a,model_b,winner,count").encode(), "every battle has count 0"),
    (_log(["a,b,model_a,2,3"], "model_a,model_b,winner,count,weight").encode(), "'count' and 'weight' are both given"),
])
def test_bad_battle_files_are_clear_errors(tmp_path, capsys, data, msg):
    path = tmp_path / "log.csv"
    path.write_bytes(data)
    assert _run([str(path)] + FAST) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_a_json_object_file_and_a_bad_prior_scale_are_named(tmp_path, capsys):
    path = tmp_path / "log.json"
    path.write_text(json.dumps({"battles": [{"model_a": "a", "model_b": "b", "winner": "model_a"}]}, indent=2))
    assert _run([str(path)] + FAST) == 2
    assert "one JSON object" in capsys.readouterr().err
    ok = tmp_path / "ok.csv"
    ok.write_text(_log(["a,b,model_a"]))
    assert _run([str(ok), "--prior-scale", "-1"] + FAST) == 2
    assert "--prior-scale" in capsys.readouterr().err


def test_bom_files_models_named_na_and_disconnected_logs(tmp_path, capsys):
    rows = ["NA,None,model_a", "None,null,model_b", "null,NA,tie", "NA,None,model_a",  # one part
            "x,y,model_a", "y,x,model_b"]                                          # another
    path = tmp_path / "log.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _log(rows).encode())  # a UTF-8 byte-order mark (spreadsheet export)
    out = tmp_path / "r.json"
    assert _run([str(path), "--json", str(out)] + FAST) == 0
    err = capsys.readouterr().err
    assert "2 parts that never meet" in err and "NA, None, null" in err and "x, y" in err
    assert {m["name"] for m in json.loads(out.read_text())["models"]} == {"NA", "None", "null", "x", "y"}


def test_ci_reaches_every_reported_parameter():
    from ppl_models.judges.fit import _param_summary

    x = np.random.default_rng(0).normal(size=(2, 4000, 1))
    wide, narrow = (_param_summary({"position_bias": x, "log_nu": x}, ("position_bias", "log_nu"), ci)
                    for ci in (0.95, 0.5))
    for k in ("position_bias", "nu"):
        assert narrow[k]["ci_high"] - narrow[k]["ci_low"] < 0.5 * (wide[k]["ci_high"] - wide[k]["ci_low"])
    assert narrow["position_bias"]["ci_high"] == pytest.approx(np.quantile(x, 0.75))


def test_bootstrap_intervals_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(400):
        a, b = rng.choice(["p", "q", "r"], 2, replace=False)
        rows.append(f"{a},{b},{['model_a', 'model_b', 'tie'][rng.integers(3)]}")
    path, out = tmp_path / "log.csv", tmp_path / "r.json"
    path.write_text(_log(rows))
    assert _run([str(path), "--bootstrap", "5", "--quiet"]) == 2
    assert "--bootstrap must be >= 10" in capsys.readouterr().err
    assert _run([str(path), "--bootstrap", "30", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "percentiles of the MLE over 30 bootstrap refits" in text and "R-hat" not in text
    assert {m["name"] for m in json.loads(out.read_text())["models"]} == {"p", "q", "r"}
