r"""Decoding speed of ppl's LM-state engine against transformers' PyTorch ``generate``, side by side.

A random-weight model of Qwen2.5-1.5B's shape (``--size full``: 28 layers, width 1536, 12 query and
2 key/value heads of 128, MLP 8960, vocabulary 151,936) or a reduced one for CPUs (``--size
small``, the default off GPU) is written once with transformers and loaded by both, so both run
the same weights. Measured, as medians of interleaved repeats with CPU time beside wall time:

* **decode**: N sequences of T new tokens after a P-token prompt, sampled at temperature 1 (no
  end-of-sequence): ``ppl.lm.sample_step`` (one compiled loop, KV cache in place) against
  ``model.generate(do_sample=True, top_k=0)`` on the same device;
* **particle filter**: ``ppl.run_smc`` on an ``ppl.lm.LMProgram`` of two steps of T/2 tokens with
  a cheap potential and one multinomial resampling of the N particles between them (KV caches
  included), against the plain decoding of the same T tokens (the engine's overhead: the step
  loop, weights, the gather).

Prints one JSON line; ``ok`` is false when the filter step costs more than ``--max-pf-overhead``
times the decoding it contains (default 1.5). The speed ratio against transformers is reported,
not targeted. Needs the ``hf`` extra (torch, transformers).

    python benchmarks/lm_gpu.py                    # reduced size on CPU
    python benchmarks/lm_gpu.py --size full        # on a GPU: bf16, Qwen2.5-1.5B's shape
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

SIZES = {
    "full": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960, vocab_size=151936),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=704, vocab_size=32000),
}


def _timed(fn, sync):
    w, c = time.perf_counter(), time.process_time()
    sync(fn())
    return time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="default: full on a GPU, small otherwise")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: bfloat16 on a GPU")
    ap.add_argument("--particles", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-pf-overhead", type=float, default=1.5)
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import transformers

    import ppl
    from ppl_models.lm import load_pretrained

    gpu = jax.default_backend() == "gpu"
    size = args.size or ("full" if gpu else "small")
    dtype_name = args.dtype or ("bfloat16" if gpu else "float32")
    jdtype = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    tdtype = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    tdev = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    n, p, t = args.particles, args.prompt, args.new_tokens
    load0 = os.getloadavg()[0]

    cfg = transformers.Qwen2Config(**SIZES[size], max_position_embeddings=4096, tie_word_embeddings=False,
                                   bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        transformers.Qwen2ForCausalLM(cfg).save_pretrained(folder)
        model = transformers.Qwen2ForCausalLM.from_pretrained(folder, dtype=tdtype).to(tdev).eval()
        lm = load_pretrained(folder, dtype=jdtype, param_dtype=jdtype)

    prompt = np.random.default_rng(0).integers(0, cfg.vocab_size, p).astype(np.int32)
    max_len = p + t + 1
    state = ppl.lm.prompt_state(lm, prompt, max_length=max_len)
    states = jax.tree.map(lambda a: jnp.repeat(a[None], n, axis=0), state)
    step_cfg = ppl.lm.StepConfig(max_step_tokens=t)
    decode = jax.jit(lambda params, key: ppl.lm.sample_step(lm, params, key, states, step_cfg)[0].tokens)

    # two steps of T/2 tokens with one multinomial resampling of the particles (KV caches included)
    # between them, against decoding the same T tokens in one go
    program = ppl.lm.LMProgram(lm, prompt, lambda prev, s: 0.01 * jnp.sum(s.tokens[:8]).astype(jnp.float32),
                               max_steps=2, max_step_tokens=t // 2, max_length=max_len, shared_prefix=0)

    def ours(i):
        return decode(lm.params, jax.random.key(i))

    def pf_step(i):
        return ppl.run_smc(program, n, key=jax.random.key(i), ess_threshold=1.0, resampling="multinomial").particles.tokens

    ids = torch.as_tensor(np.repeat(prompt[None], n, axis=0), dtype=torch.long, device=tdev)

    def theirs(i):
        torch.manual_seed(i)
        with torch.no_grad():
            return model.generate(ids, max_new_tokens=t, min_new_tokens=t, do_sample=True, top_k=0, top_p=1.0,
                                  temperature=1.0, pad_token_id=0)

    jsync = lambda x: jax.block_until_ready(x)  # noqa: E731
    tsync = lambda x: torch.cuda.synchronize() if tdev == "cuda" else None  # noqa: E731
    for warm in range(2):  # compile / warm up
        jsync(ours(warm)), jsync(pf_step(warm)), tsync(theirs(warm))
    rows = {"ours": [], "torch": [], "pf": []}
    for r in range(args.repeats):  # interleaved
        rows["ours"].append(_timed(lambda: ours(100 + r), jsync))
        rows["torch"].append(_timed(lambda: theirs(100 + r), tsync))
        rows["pf"].append(_timed(lambda: pf_step(100 + r), jsync))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
    rng = np.random.default_rng(0)

    def interval(num, den):
        """95% bootstrap interval of the median of the per-repeat ratios num/den (repeats paired)."""
        r = np.array([a[0] / b[0] for a, b in zip(rows[num], rows[den])])
        boots = np.median(r[rng.integers(0, len(r), (2000, len(r)))], axis=1)
        return [round(float(np.percentile(boots, 2.5)), 3), round(float(np.percentile(boots, 97.5)), 3)]

    tokens = n * t
    pf_over = med["pf"][0] / med["ours"][0]
    out = {
        "ok": bool(pf_over <= args.max_pf_overhead),
        "missed_targets": [] if pf_over <= args.max_pf_overhead else [f"pf step {pf_over:.2f}x decode"],
        "device": jax.devices()[0].device_kind, "torch_device": tdev, "size": size, "dtype": dtype_name,
        "particles": n, "prompt_tokens": p, "new_tokens": t, "repeats": args.repeats,
        "ours_decode_tokens_per_s": round(tokens / med["ours"][0], 1),
        "torch_generate_tokens_per_s": round(tokens / med["torch"][0], 1),
        "decode_speed_ratio_ours_over_torch": round(med["torch"][0] / med["ours"][0], 3),
        "decode_speed_ratio_ci95": interval("torch", "ours"),
        "decode_cpu_seconds": {"ours": round(med["ours"][1], 3), "torch": round(med["torch"][1], 3)},
        "decode_wall_seconds": {"ours": round(med["ours"][0], 3), "torch": round(med["torch"][0], 3)},
        "pf_step_over_decode": round(pf_over, 3),
        "pf_step_over_decode_ci95": interval("pf", "ours"),
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
