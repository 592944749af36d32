r"""``ppl scale`` on your own model: a Hugging Face LM, a process reward model and MATH-style data.

This example writes tiny *random* checkpoints (a Qwen2 LM with a BPE tokenizer and a ChatML chat
template, a Qwen2 PRM with Qwen2.5-Math-PRM's classification head) and a 4-problem JSON-lines
file, then runs the command you would run on real ones:

    ppl scale --checkpoint LM_DIR --prm-checkpoint PRM_DIR --prm-type classifier \
              --data math.jsonl --quick --max-steps 3 --max-step-tokens 8

The accuracies are zero (the weights are random); what it shows is the whole path: chat template,
tokenization, the one-token step delimiter, every method, grading by math-verify, the memory
estimate, the table and the JSON. ``docs/your-model.md`` has the commands for
Qwen2.5-Math-1.5B-Instruct with Qwen2.5-Math-PRM-7B on MATH500.

    python examples/own_model.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="folder for the checkpoints and results (default: a temporary one)")
    ap.add_argument("--budgets", default="1,4", help="budgets (default 1,4)")
    args = ap.parse_args(argv)

    from ppl_models.cli import main as ppl
    from ppl_models.scale.tiny_hf import write

    root = Path(args.out or tempfile.mkdtemp(prefix="ppl-own-model-"))
    lm_dir, prm_dir, data = write(root)
    print(f"wrote {lm_dir}, {prm_dir} and {data}")
    return ppl(["scale", "--checkpoint", str(lm_dir), "--prm-checkpoint", str(prm_dir), "--prm-type", "classifier",
                "--data", str(data), "--quick", "--budgets", args.budgets, "--problems", "4", "--max-steps", "3",
                "--max-step-tokens", "8", "--out", str(root / "scale"), "--no-plot", "--quiet", "--overwrite"])


if __name__ == "__main__":
    raise SystemExit(main())
