"""`ppl scale` runs survive: outputs checked before compute, records streamed, Ctrl-C kept, --resume."""

from __future__ import annotations

import json


from ppl_models.cli import main
from ppl_models.scale import job

ARGS = ["scale", "--problems", "3", "--budgets", "1,2", "--methods", "best_of_n,majority_vote,particle_filter",
        "--prm", "oracle", "--seed", "3", "--quiet", "--no-plot"]


def _result(folder):
    obj = json.loads((folder / "scale.json").read_text())
    meta = obj.pop("meta")
    obj.pop("seconds")
    for m in obj["methods"].values():
        m.pop("seconds")
    return obj, meta


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(ARGS + ["--out", str(whole)]) == 0
    want, meta = _result(whole)
    assert meta["versions"]["ppl"] and meta["devices"]["count"] >= 1 and meta["config"]["num_problems"] == 3
    assert any(k.endswith("model.safetensors") for k in meta["checkpoints"])  # the bundled LM's hash
    lines = [json.loads(x) for x in (whole / "samples.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "config"
    cells = [r for r in lines if r["kind"] == "cell"]
    assert len(cells) == 3 * 3 * 2 and len([r for r in lines if r["kind"] == "pool"]) == 3
    assert {"problem", "method", "budget", "text", "answer", "score", "correct", "generated_tokens", "prm_calls",
            "flops", "seconds"} <= set(cells[0])

    # Ctrl-C while the second problem runs: exit 130, one line, the first problem kept.
    real, calls = job._run_method, []

    def interrupt(*a, **k):
        calls.append(1)
        if len(calls) > 2:  # particle_filter at budgets 1 and 2 for the first problem, then the second
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(job, "_run_method", interrupt)
    capsys.readouterr()
    assert main(ARGS + ["--out", str(cut)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; 1 of 3 problems are kept" in err and "--resume" in err and "Traceback" not in err
    assert not (cut / "scale.json").exists()
    monkeypatch.setattr(job, "_run_method", real)

    # Without --resume or --overwrite the command refuses, before any compute; another option is named.
    assert main(ARGS + ["--out", str(cut)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(ARGS + ["--out", str(cut), "--resume", "--temperature", "0.5"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(ARGS + ["--out", str(tmp_path / "none"), "--resume"]) == 2

    calls.clear()
    monkeypatch.setattr(job, "_run_method", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(ARGS + ["--out", str(cut), "--resume"]) == 0
    assert len(calls) == 2 * 2  # problems 2 and 3 only: particle_filter at 2 budgets each
    got, _ = _result(cut)
    assert got == want
    again = [json.loads(x) for x in (cut / "samples.jsonl").read_text().splitlines()]
    assert sorted((r["problem"], r["method"], r["budget"]) for r in again if r["kind"] == "cell") == \
        sorted((r["problem"], r["method"], r["budget"]) for r in cells)


def test_outputs_are_checked_before_compute(tmp_path, capsys):
    folder = tmp_path / "f"
    folder.mkdir()
    assert main(ARGS + ["--out", str(tmp_path / "o"), "--json", str(folder)]) == 2
    assert "--json" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(ARGS + ["--out", str(blocker / "sub")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
