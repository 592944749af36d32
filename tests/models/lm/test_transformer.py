"""Incremental decoding with the KV cache equals a full forward pass; jit does not recompile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_models.lm import LMConfig, gather_cache, random_lm

from .conftest import tiny_config

B, T_FULL, T_CACHE = 3, 12, 16


def _full_logits(lm, tokens):
    pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    logits, cache = jax.jit(lm.apply)(lm.params, tokens, pos, None)
    assert cache is None
    return np.asarray(logits)


def test_incremental_equals_full_forward(family):
    """Ragged prefill (rows at different lengths, padded with junk), a chunk, then one token at a
    time, into a cache pre-filled with garbage: every real position's logits equal the full pass."""
    lm = random_lm(tiny_config(family), seed=0, std=0.1)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, lm.vocab_size, (B, T_FULL)), jnp.int32)
    ref = _full_logits(lm, tokens)

    # garbage in every slot: attention must mask by position, not rely on zeros
    cache = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 50, x.dtype), lm.init_cache(B, T_CACHE))
    step = jax.jit(lm.apply, donate_argnums=3)
    got = np.full_like(ref, np.nan)
    lengths = np.array([2, 5, 3])

    # 1. prefill chunk of 5: row r's real tokens are its first lengths[r]; the rest is junk
    #    written at later positions, which later writes overwrite before anyone reads them.
    pos = np.broadcast_to(np.arange(5), (B, 5))
    junk = jnp.where(pos < lengths[:, None], tokens[:, :5], (tokens[:, :5] + 7) % lm.vocab_size)
    logits, cache = step(lm.params, junk, jnp.asarray(pos, jnp.int32), cache)
    for r in range(B):
        got[r, : lengths[r]] = np.asarray(logits)[r, : lengths[r]]
    # 2. a chunk of 3 at per-row offsets
    pos = lengths[:, None] + np.arange(3)
    logits, cache = step(lm.params, jnp.take_along_axis(tokens, jnp.asarray(pos), 1), jnp.asarray(pos, jnp.int32), cache)
    for r in range(B):
        got[r, pos[r]] = np.asarray(logits)[r]
    # 3. one token at a time, rows at different positions
    cur = lengths + 3
    while cur.min() < T_FULL:
        p = np.minimum(cur, T_FULL - 1)[:, None]
        logits, cache = step(lm.params, jnp.take_along_axis(tokens, jnp.asarray(p), 1), jnp.asarray(p, jnp.int32), cache)
        for r in range(B):
            if cur[r] < T_FULL:
                got[r, cur[r]] = np.asarray(logits)[r, 0]
        cur = cur + 1
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_shared_prefix_equals_a_full_cache(family):
    """Rows that continue one prefix, read from a prefix cache of batch one (positions 0..F-1)
    and their own caches of the later positions (filled with garbage first): a
    chunk of 3, then one token at a time, give the full pass's logits; positions below F are not written."""
    lm = random_lm(tiny_config(family), seed=0, std=0.1)
    rng = np.random.default_rng(1)
    f = 4
    tokens = np.asarray(rng.integers(0, lm.vocab_size, (B, T_FULL)), np.int32)
    tokens[:, :f] = tokens[0, :f]
    ref = _full_logits(lm, jnp.asarray(tokens))
    _, prefix = jax.jit(lm.apply)(lm.params, jnp.asarray(tokens[:1, :f]), jnp.arange(f, dtype=jnp.int32)[None],
                                  lm.init_cache(1, f))
    own = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 50, x.dtype), lm.init_cache(B, T_CACHE - f))
    step = jax.jit(lm.apply_with_prefix, donate_argnums=4)
    got = np.full_like(ref[:, f:], np.nan)
    lengths = np.array([f, f, f])
    pos = lengths[:, None] + np.arange(3)
    logits, own = step(lm.params, jnp.asarray(np.take_along_axis(tokens, pos, 1)), jnp.asarray(pos, jnp.int32),
                       prefix, own)
    for r in range(B):
        got[r, pos[r] - f] = np.asarray(logits)[r]
    cur = lengths + 3
    while cur.min() < T_FULL:
        p = np.minimum(cur, T_FULL - 1)[:, None]
        logits, own = step(lm.params, jnp.asarray(np.take_along_axis(tokens, p, 1)), jnp.asarray(p, jnp.int32),
                           prefix, own)
        for r in range(B):
            if cur[r] < T_FULL:
                got[r, cur[r] - f] = np.asarray(logits)[r, 0]
        cur = cur + 1
    np.testing.assert_allclose(got, ref[:, f:], atol=1e-5, rtol=1e-5)
    # A write below the prefix length is dropped: the rows' caches do not change.
    before = jax.tree.map(np.asarray, own)
    _, after = jax.jit(lm.apply_with_prefix)(lm.params, jnp.zeros((B, 1), jnp.int32), jnp.zeros((B, 1), jnp.int32),
                                              prefix, own)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, np.asarray(b))
    with pytest.raises(ValueError, match="prefix"):
        lm.apply_with_prefix(lm.params, jnp.zeros((B, 1), jnp.int32), jnp.zeros((B, 1), jnp.int32),
                             lm.init_cache(2, f), lm.init_cache(B, 4))


def test_cache_layout_and_gather():
    lm = random_lm(tiny_config("llama"), seed=0)
    cache = lm.init_cache(4, 10)
    assert len(cache) == 2
    for leaf in jax.tree.leaves(cache):
        assert leaf.shape == (4, 2, 10, 16) and leaf.dtype == jnp.float32
    filled = jax.tree.map(lambda x: x + jnp.arange(4.0)[:, None, None, None], cache)
    picked = gather_cache(filled, jnp.array([3, 3, 0, 1]))
    np.testing.assert_array_equal(np.asarray(picked[1].v[:, 0, 0, 0]), [3, 3, 0, 1])


def test_jit_does_not_recompile_for_new_params():
    cfg = tiny_config("gpt2")
    lm_a, lm_b = random_lm(cfg, seed=0), random_lm(cfg, seed=1)
    traces = []

    def f(params, tokens, positions, cache):
        traces.append(1)
        return lm_a.apply(params, tokens, positions, cache)

    f = jax.jit(f)
    tokens = jnp.zeros((2, 3), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(3, dtype=jnp.int32), (2, 3))
    la, _ = f(lm_a.params, tokens, pos, lm_a.init_cache(2, 8))
    lb, _ = f(lm_b.params, tokens, pos, lm_b.init_cache(2, 8))
    assert len(traces) == 1
    assert not np.allclose(la, lb)  # the new params were used
    assert lm_a.apply is lm_a.apply and hash(lm_a) != hash(lm_b)


def test_vmap_over_particles():
    lm = random_lm(tiny_config("qwen2"), seed=0, std=0.1)
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, lm.vocab_size, (2, 3, 4)), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(4, dtype=jnp.int32), (2, 3, 4))
    cache = jax.tree.map(lambda x: jnp.stack([x, x]), lm.init_cache(3, 8))
    out, _ = jax.jit(jax.vmap(lm.apply, in_axes=(None, 0, 0, 0)))(lm.params, tokens, pos, cache)
    ref = np.stack([_full_logits(lm, tokens[i]) for i in range(2)])
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_bfloat16_compute_runs():
    lm = random_lm(tiny_config("llama"), seed=0, dtype=jnp.bfloat16)
    cache = lm.init_cache(2, 8)
    assert cache[0].k.dtype == jnp.bfloat16
    logits, cache = jax.jit(lm.apply)(lm.params, jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3), jnp.int32) + jnp.arange(3), cache)
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()


def test_num_params_matches_module(family):
    lm = random_lm(tiny_config(family))
    assert sum(x.size for x in jax.tree.leaves(lm.params)) == lm.config.num_params


def test_errors_before_compute():
    lm = random_lm(tiny_config("gpt2"))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        lm.init_cache(1, 64)
    with pytest.raises(ValueError, match="positions"):
        lm.apply(lm.params, jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 4), jnp.int32), None)
    with pytest.raises(ValueError, match="num_kv_heads"):
        LMConfig.llama(vocab_size=10, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="eos_token_id"):
        LMConfig.gpt2(vocab_size=10, hidden_size=32, num_layers=1, num_heads=4, eos_token_id=10)
