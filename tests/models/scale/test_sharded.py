"""`ppl scale` data-parallel over a device mesh gives the table of the one-by-one run.

The multi-device run happens once, in a subprocess (``python -m tests.models.scale.sharded_scale``)
started with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``: the device count is fixed when
jax starts, and the rest of the suite keeps its single device.
"""

import pytest

from tests.fake_devices import run_module

# 90 s of fixture: `ppl scale --devices` against one device. The sharded engine is tested in
# tests/smc/test_sharding.py, batched problems in tests/scaling/test_batch.py.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs():
    return run_module("tests.models.scale.sharded_scale")


def test_sharded_table_equals_one_by_one(runs):
    assert runs["num_devices"] == 8
    one, sharded = runs["one_by_one"], runs["sharded"]
    assert set(one["methods"]) == {"best_of_n", "majority_vote", "particle_filter", "beam_search", "dvts"}
    # Correct counts per method and budget, compute counters, coverage and per-problem outcomes: identical.
    assert sharded["methods"] == one["methods"]
    assert sharded["coverage"] == one["coverage"] and sharded["solved"] == one["solved"]
    assert sharded["pool_success"] == one["pool_success"]
    assert sharded["tokens_per_rollout"] == one["tokens_per_rollout"]
    # The run is not degenerate: some but not all problems solved, tokens counted.
    correct = [k for m in one["methods"].values() for k in m["correct"]]
    assert 0 < max(correct) and min(correct) < 6
    assert all(t > 0 for m in one["methods"].values() for t in m["generated_tokens"])


def test_problems_really_ran_on_several_devices(runs):
    calls = runs["calls"]
    # The pool and particle_filter, beam_search, dvts at each budget (beam search at budget 1: width 1).
    methods = [c["method"] for c in calls]
    assert methods.count("rollouts") == 2 and methods.count("particle_filter") == 4
    assert methods.count("beam_search") == 4 and methods.count("dvts") == 4
    for c in calls:
        # 6 problems on 4 devices: a full call on devices 0-3, then 2 problems (padded with 2 repeats).
        expect = [[0], [1], [2], [3]] if c["problems"] == 4 else [[0], [1]]
        assert c["devices"] == expect, c


def test_vmapped_problems_per_device_do_not_depend_on_the_mesh(runs):
    # Two problems per device, vmapped: the per-device program is the same on 2 devices as on 1.
    assert runs["vmap_2x2_devices"] == [[0], [0], [1], [1]]
    assert runs["vmap_1x2_devices"] == [[0], [0], [0], [0]]
    assert runs["vmap_same"]
    assert all(runs["vmap_answers_match_single"])
