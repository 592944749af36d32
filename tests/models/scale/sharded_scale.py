"""`ppl scale` data-parallel over fake CPU devices, against the one-by-one run (prints one JSON line).

Run by tests/models/scale/test_sharded.py as ``python -m tests.models.scale.sharded_scale`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the device count is fixed when jax starts).
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import numpy as np


def _table(res) -> dict:
    return {"methods": {m: {"budgets": c.budgets, "correct": c.correct, "generated_tokens": c.generated_tokens,
                            "lm_forward_tokens": c.lm_forward_tokens, "prm_calls": c.prm_calls, "flops": c.flops}
                        for m, c in res.methods.items()},
            "coverage": res.coverage, "pool_success": res.pool_success,
            "solved": {m: {str(b): v for b, v in d.items()} for m, d in res.solved.items()},
            "tokens_per_rollout": res.tokens_per_rollout}


def main() -> None:
    from ppl_models.scale.job import ScaleConfig, _setup, run_scale
    from ppl import scaling

    out = {"num_devices": jax.device_count()}
    # Record where every batched call left each problem's particles.
    calls = []
    real = scaling.batched

    def spy(method, programs, *args, **kwargs):
        results = real(method, programs, *args, **kwargs)
        devices = [sorted(d.id for d in r.particles.tokens.devices()) for r in results]
        calls.append({"method": getattr(method, "__name__", str(method)), "problems": len(programs),
                      "devices": devices})
        return results

    scaling.batched = spy
    # 6 problems on 4 devices: one full call and one padded with 2 repeats.
    cfg = ScaleConfig(methods=("best_of_n", "majority_vote", "particle_filter", "beam_search", "dvts"),
                      budgets=(1, 4), num_problems=6, prm="oracle", seed=3)
    t0 = time.perf_counter()
    one = run_scale(cfg, progress=False)
    out["seconds_one_by_one"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sharded = run_scale(dataclasses.replace(cfg, devices=4), progress=False)
    out["seconds_sharded"] = time.perf_counter() - t0
    out["one_by_one"], out["sharded"], out["calls"] = _table(one), _table(sharded), calls
    scaling.batched = real

    # problems_per_device = 2 (vmapped on each device): 2 devices x 2 equal 1 device x 2, bit for bit.
    s = _setup(dataclasses.replace(cfg, num_problems=4))
    programs = [s.program.with_prompt(p) for p in s.prompts]
    rewards = [s.reward_for(p) for p in s.problems]
    keys = [jax.random.fold_in(jax.random.key(7), i) for i in range(4)]
    runs = {}
    for name, devices in (("vmap_2x2", 2), ("vmap_1x2", 1)):
        res = scaling.batched(scaling.particle_filter, programs, 4, keys=keys, reward=rewards, answer_fn=s.answer_fn,
                              mesh=scaling.prompt_mesh(devices), problems_per_device=2)
        runs[name] = res
        out[name + "_devices"] = [sorted(d.id for d in r.particles.tokens.devices()) for r in res]
    a, b = runs["vmap_2x2"], runs["vmap_1x2"]
    out["vmap_same"] = all(
        x.answer == y.answer and x.compute == y.compute and np.array_equal(x.log_weights, y.log_weights)
        and np.array_equal(np.asarray(x.particles.tokens), np.asarray(y.particles.tokens)) for x, y in zip(a, b))
    single = [scaling.particle_filter(p, 4, key=k, reward=r, answer_fn=s.answer_fn)
              for p, k, r in zip(programs, keys, rewards)]
    # Vmapping may round differently in the last bits, but here it changes no answer.
    out["vmap_answers_match_single"] = [x.answer == y.answer for x, y in zip(a, single)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
