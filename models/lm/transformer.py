r"""A decoder-only transformer in flax nnx with a preallocated key/value cache.

One module covers the GPT-2 family (learned positions, LayerNorm, GELU MLP, biases) and the
Llama / Qwen2 family (rotary positions, RMSNorm, SiLU-gated MLP, grouped-query attention), as
selected by :class:`~ppl_models.lm.config.LMConfig`. Every block is pre-norm:

.. math::

    h \leftarrow h + \mathrm{Attn}(\mathrm{Norm}_1(h)), \qquad
    h \leftarrow h + \mathrm{MLP}(\mathrm{Norm}_2(h)), \qquad
    \mathrm{logits} = \mathrm{Norm}_f(h)\, W_{\mathrm{out}}

with :math:`W_{\mathrm{out}} = E^\top` (the token embedding) when embeddings are tied.

**Attention.** For query head :math:`i` (reading key/value head :math:`j = \lfloor i / G
\rfloor`, :math:`G = H / H_{kv}`), a query at position :math:`p` attends to the cached keys at
positions :math:`t \le p` only:

.. math::

    a_{pt} = \frac{q_p \cdot k_t}{\sqrt{D_h}}, \qquad
    \mathrm{out}_p = \sum_{t \le p} \mathrm{softmax}_t(a_{pt})\, v_t .

The mask is by position, not by a stored length, so cache slots past a row's position may hold
anything.

**Shared prefix.** The keys and values of a prompt that many rows continue can be stored once:
a *prefix* cache of batch size one holds positions :math:`0..F-1`, each row's own cache holds
positions :math:`F, F+1, \ldots`, and the sum above runs over both (one softmax over the
concatenated scores), so the result equals a full per-row cache to float rounding.

**RoPE** (rotary positions, the "rotate-half" layout of Hugging Face Llama): with
:math:`\omega_i = \theta^{-2i/D_h}` for :math:`i < D_h/2` and :math:`x = (x_1, x_2)` split in halves,

.. math::

    \mathrm{RoPE}(x, p) = (x_1 \cos p\omega - x_2 \sin p\omega,\;
                           x_2 \cos p\omega + x_1 \sin p\omega),

applied to queries and keys, so :math:`q_p \cdot k_t` depends on :math:`p - t` only.

**Norms.** :math:`\mathrm{RMSNorm}(x) = g \odot x / \sqrt{\overline{x^2} + \epsilon}`;
:math:`\mathrm{LayerNorm}(x) = g \odot (x - \bar x) / \sqrt{\mathrm{Var}(x) + \epsilon} + b`.
Both are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .cache import KVCache, LayerCache, init_cache_for, write_cache
from .config import LMConfig

__all__ = ["Transformer", "rope", "rope_frequencies", "rms_norm", "layer_norm"]

_INIT_STD = 0.02


def rms_norm(x, scale, eps):
    r"""RMSNorm: :math:`g \odot x / \sqrt{\mathrm{mean}(x^2) + \epsilon}` (in float32)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * scale.astype(jnp.float32)).astype(x.dtype)


def layer_norm(x, scale, bias, eps):
    r"""LayerNorm: :math:`g \odot (x - \bar x) / \sqrt{\mathrm{Var}(x) + \epsilon} + b` (in float32)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


def rope_frequencies(d: int, theta: float, scaling=None) -> jax.Array:
    r"""The rotary frequencies :math:`\omega_i = \theta^{-2i/d}`, ``f32[d/2]``; with Llama 3's
    ``scaling = ("llama3", s, a, b, L)`` (Meta's Llama 3.1 recipe) each is rescaled by its
    wavelength :math:`\lambda_i = 2\pi/\omega_i`: kept where :math:`\lambda_i < L/b`, divided by
    :math:`s` where :math:`\lambda_i > L/a`, and in between interpolated,
    :math:`\omega_i \big((1-\gamma)/s + \gamma\big)` with :math:`\gamma = (L/\lambda_i - a)/(b - a)`."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    if scaling is None:
        return inv_freq
    _, factor, low, high, original = scaling
    wavelen = 2.0 * math.pi / inv_freq
    scaled = jnp.where(wavelen > original / low, inv_freq / factor, inv_freq)
    gamma = (original / wavelen - low) / (high - low)
    smooth = (1.0 - gamma) * scaled / factor + gamma * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return jnp.where(medium, smooth, scaled)


def rope(x, positions, theta, scaling=None):
    r"""Rotary embedding of ``x: [B, S, heads, D_h]`` at ``positions: int[B, S]`` (rotate-half
    layout), with the frequencies of :func:`rope_frequencies`."""
    d = x.shape[-1]
    inv_freq = rope_frequencies(d, theta, scaling)  # [D_h/2]
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, S, D_h/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., : d // 2], x32[..., d // 2 :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def _activation(name):
    return {
        "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),
        "relu": jax.nn.relu,
        "silu": jax.nn.silu,
    }[name]


def _linear(din, dout, bias, dtype, param_dtype, rngs):
    return nnx.Linear(
        din, dout, use_bias=bias, dtype=dtype, param_dtype=param_dtype,
        kernel_init=nnx.initializers.normal(_INIT_STD), rngs=rngs,
    )


class Norm(nnx.Module):
    """LayerNorm (``scale``, ``bias``) or RMSNorm (``scale``) over the last axis."""

    def __init__(self, dim: int, kind: str, eps: float, param_dtype=jnp.float32):
        self.kind = kind
        self.eps = eps
        # "rmsnorm_offset" (Gemma) stores w and scales by 1 + w
        self.scale = nnx.Param((jnp.zeros if kind == "rmsnorm_offset" else jnp.ones)((dim,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype)) if kind == "layernorm" else None

    def __call__(self, x):
        if self.kind == "layernorm":
            return layer_norm(x, self.scale[...], self.bias[...], self.eps)
        if self.kind == "rmsnorm_offset":
            return rms_norm(x, 1.0 + self.scale[...].astype(jnp.float32), self.eps)
        return rms_norm(x, self.scale[...], self.eps)


class Attention(nnx.Module):
    """Multi-head / grouped-query causal self-attention reading and writing a :class:`LayerCache`."""

    def __init__(self, config: LMConfig, *, dtype, param_dtype, rngs: nnx.Rngs, window: int | None = None):
        c = config
        self.config = c
        self.window = window  # this layer's sliding window (None: global attention)
        self.q = _linear(c.hidden_size, c.num_heads * c.head_dim, c.qkv_bias, dtype, param_dtype, rngs)
        self.k = _linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.qkv_bias, dtype, param_dtype, rngs)
        self.v = _linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.qkv_bias, dtype, param_dtype, rngs)
        self.o = _linear(c.num_heads * c.head_dim, c.hidden_size, c.o_bias, dtype, param_dtype, rngs)
        self.q_norm = Norm(c.head_dim, "rmsnorm", c.norm_eps, param_dtype) if c.qk_norm else None
        self.k_norm = Norm(c.head_dim, "rmsnorm", c.norm_eps, param_dtype) if c.qk_norm else None

    def __call__(self, x, positions, cache: LayerCache | None, prefix: LayerCache | None = None, pad=None):
        c = self.config
        b, s, _ = x.shape
        hkv, g, dh = c.num_kv_heads, c.num_heads // c.num_kv_heads, c.head_dim
        q = self.q(x).reshape(b, s, c.num_heads, dh)
        k = self.k(x).reshape(b, s, hkv, dh)
        v = self.v(x).reshape(b, s, hkv, dh)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if c.position == "rotary":
            at = positions if pad is None else positions - pad[:, None]  # a slot's position in its row
            q = rope(q, at, c.rope_theta, c.rope_scaling)
            k = rope(k, at, c.rope_theta, c.rope_scaling)
        offset = 0 if prefix is None else prefix.k.shape[2]
        if cache is None:  # attend within the chunk only: keys at the chunk's own positions
            keys, values = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, H_kv, S, D_h]
            key_pos = positions  # [B, S]
            new_cache = None
        else:
            # Slot t of the rows' own cache holds position offset + t; a position below the
            # offset (in the shared prefix) is not written (an out-of-range slot is dropped).
            slots = positions - offset
            new_cache = write_cache(cache, k, v, jnp.where(slots < 0, cache.k.shape[2], slots))
            keys, values = new_cache.k, new_cache.v  # [B, H_kv, T, D_h]
            key_pos = offset + jnp.arange(keys.shape[2])[None, :]
        q = q.reshape(b, s, hkv, g, dh)
        scale = 1.0 / math.sqrt(dh if c.query_pre_attn_scalar is None else c.query_pre_attn_scalar)
        neg = jnp.finfo(jnp.float32).min
        cap = c.attn_logit_softcap

        def scaled(s):
            return s * scale if cap is None else cap * jnp.tanh(s * scale / cap)

        scores = jnp.einsum("bskgd,bktd->bkgst", q, keys.astype(q.dtype), preferred_element_type=jnp.float32)
        mask = key_pos[:, None, :] <= positions[:, :, None]  # [B, S, T]
        if self.window is not None:
            mask = mask & (key_pos[:, None, :] > positions[:, :, None] - self.window)
        if pad is not None:  # left padding: a row's first pad slots are not attended
            mask = mask & (key_pos[:, None, :] >= pad[:, None, None])
        scores = jnp.where(mask[:, None, None], scaled(scores), neg)
        if prefix is not None:
            # The shared prefix (batch 1, positions 0..offset-1) is read by every row without a
            # copy: its scores join the rows' own in one softmax.
            pre = jnp.einsum("bskgd,ktd->bkgst", q, prefix.k[0].astype(q.dtype), preferred_element_type=jnp.float32)
            pre_mask = jnp.arange(offset)[None, None, :] <= positions[:, :, None]  # [B, S, offset]
            if self.window is not None:
                pre_mask = pre_mask & (jnp.arange(offset)[None, None, :] > positions[:, :, None] - self.window)
            if pad is not None:
                pre_mask = pre_mask & (jnp.arange(offset)[None, None, :] >= pad[:, None, None])
            scores = jnp.concatenate([jnp.where(pre_mask[:, None, None], scaled(pre), neg), scores], axis=-1)
        probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        if prefix is not None:
            out = (jnp.einsum("bkgst,ktd->bskgd", probs[..., :offset], prefix.v[0].astype(q.dtype))
                   + jnp.einsum("bkgst,bktd->bskgd", probs[..., offset:], values.astype(q.dtype)))
        else:
            out = jnp.einsum("bkgst,bktd->bskgd", probs, values.astype(q.dtype))
        return self.o(out.reshape(b, s, c.num_heads * dh)), new_cache


class MLP(nnx.Module):
    """``down(act(gate(x)) * up(x))`` if gated (Llama), else ``down(act(up(x)))`` (GPT-2)."""

    def __init__(self, config: LMConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        c = config
        self.act_name = c.activation
        self.gate = _linear(c.hidden_size, c.intermediate_size, c.mlp_bias, dtype, param_dtype, rngs) if c.gated_mlp else None
        self.up = _linear(c.hidden_size, c.intermediate_size, c.mlp_bias, dtype, param_dtype, rngs)
        self.down = _linear(c.intermediate_size, c.hidden_size, c.mlp_bias, dtype, param_dtype, rngs)

    def __call__(self, x):
        act = _activation(self.act_name)
        h = act(self.gate(x)) * self.up(x) if self.gate is not None else act(self.up(x))
        return self.down(h)


class Block(nnx.Module):
    """Pre-norm transformer block: attention and MLP, each with a residual connection."""

    def __init__(self, config: LMConfig, *, dtype, param_dtype, rngs: nnx.Rngs, layer: int = 0):
        c = config
        local = c.sliding_window is not None and (c.local_layers is None or layer in c.local_layers)
        self.attn_norm = Norm(c.hidden_size, c.norm, c.norm_eps, param_dtype)
        self.attn = Attention(c, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                              window=c.sliding_window if local else None)
        self.mlp_norm = Norm(c.hidden_size, c.norm, c.norm_eps, param_dtype)
        self.mlp = MLP(c, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        sandwich = c.sandwich_norms
        self.post_attn_norm = Norm(c.hidden_size, c.norm, c.norm_eps, param_dtype) if sandwich else None
        self.post_mlp_norm = Norm(c.hidden_size, c.norm, c.norm_eps, param_dtype) if sandwich else None

    def __call__(self, h, positions, cache, prefix=None, pad=None):
        a, cache = self.attn(self.attn_norm(h), positions, cache, prefix, pad)
        h = h + (a if self.post_attn_norm is None else self.post_attn_norm(a))
        m = self.mlp(self.mlp_norm(h))
        h = h + (m if self.post_mlp_norm is None else self.post_mlp_norm(m))
        return h, cache


class Transformer(nnx.Module):
    """Decoder-only transformer LM.

    Args:
      config: the architecture.
      dtype: compute dtype of matmuls and activations (float32 default; e.g. ``jnp.bfloat16``).
        Norms and softmax run in float32; logits are returned in float32.
      param_dtype: dtype of the parameters.
      rngs: ``nnx.Rngs`` for the random initialization (weights ~ N(0, 0.02^2), biases 0,
        norm scales 1).

    Call as ``logits, cache = model(tokens, positions, cache)``; see :meth:`__call__`.
    """

    def __init__(self, config: LMConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs | None = None):
        if not isinstance(config, LMConfig):
            raise TypeError(f"Transformer: config must be an LMConfig, got {type(config).__name__}.")
        rngs = nnx.Rngs(0) if rngs is None else rngs
        c = config
        self.config = c
        self.dtype = jnp.dtype(dtype)
        emb_init = nnx.initializers.normal(_INIT_STD)
        self.embed = nnx.Embed(c.vocab_size, c.hidden_size, dtype=dtype, param_dtype=param_dtype,
                               embedding_init=emb_init, rngs=rngs)
        self.pos_embed = (
            nnx.Embed(c.max_position_embeddings, c.hidden_size, dtype=dtype, param_dtype=param_dtype,
                      embedding_init=emb_init, rngs=rngs)
            if c.position == "learned" else None
        )
        self.layers = nnx.List(
            [Block(c, dtype=dtype, param_dtype=param_dtype, rngs=rngs, layer=i) for i in range(c.num_layers)]
        )
        self.final_norm = Norm(c.hidden_size, c.norm, c.norm_eps, param_dtype)
        self.lm_head = None if c.tie_word_embeddings else _linear(c.hidden_size, c.vocab_size, False, dtype, param_dtype, rngs)

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
        """Zero cache for ``batch_size`` rows of up to ``max_length`` positions (compute dtype by default)."""
        return init_cache_for(self.config, batch_size, max_length, self.dtype if dtype is None else dtype)

    def __call__(self, tokens, positions, cache: KVCache | None = None, prefix: KVCache | None = None,
                 hidden: bool = False, pad=None):
        """Logits of ``tokens: int[B, S]`` at ``positions: int[B, S]`` (with ``hidden=True``: the
        final-normed hidden states ``[B, S, D]`` instead, what a reward head reads).

        With a ``cache`` (from :meth:`init_cache`), the keys/values of the S tokens are written at
        their positions (per row) and each query at position ``p`` attends to all cache slots
        ``t <= p``; returns ``(logits float32[B, S, V], new_cache)``. With ``cache=None`` the
        chunk attends only to itself (causally, by position) and ``(logits, None)`` is returned:
        a full forward pass when ``positions`` is ``0..S-1``.

        With a ``prefix`` (a cache of batch size 1 and ``F`` slots holding positions ``0..F-1``,
        shared by every row), ``cache`` holds each row's positions from ``F`` on (slot ``t`` is
        position ``F + t``) and a query attends to both: the prompt's entries are stored once for
        all rows. Positions below ``F`` are not written.

        **Left padding** (``pad: int[B]``, the attention mask of a left-padded batch): ``positions``
        are then the tokens' *slots* in their row; slots ``< pad[b]`` hold padding, which no query
        attends to, and the token in slot ``s`` is at position ``s - pad[b]`` (its rotary angle or
        learned embedding). This is transformers' ``attention_mask`` of ``pad[b]`` zeros then ones
        with ``position_ids = cumsum(attention_mask) - 1``; a row with ``pad[b] = 0`` is unpadded.

        Positions must lie in ``[0, max_length)`` of the cache (``[F, F + max_length)`` with a
        prefix; out-of-range writes are dropped) and, for learned positions, in ``[0,
        max_position_embeddings)`` (clipped otherwise).
        """
        c = self.config
        if tokens.ndim != 2 or positions.shape != tokens.shape:
            raise ValueError(
                f"Transformer: tokens and positions must both be [B, S]; got tokens {tokens.shape}, "
                f"positions {positions.shape}."
            )
        if cache is not None and len(cache) != c.num_layers:
            raise ValueError(f"Transformer: cache has {len(cache)} layers, the model {c.num_layers}.")
        if prefix is not None and (cache is None or len(prefix) != c.num_layers or prefix[0].k.shape[0] != 1):
            raise ValueError("Transformer: a prefix needs a cache, and one layer of batch size 1 per model layer; got "
                             f"{len(prefix)} layers of batch {prefix[0].k.shape[0] if len(prefix) else None}.")
        positions = positions.astype(jnp.int32)
        if pad is not None:
            pad = jnp.broadcast_to(jnp.asarray(pad, jnp.int32), positions.shape[:1])
        h = self.embed(tokens)
        if c.embed_scale:
            h = h * jnp.asarray(math.sqrt(c.hidden_size), h.dtype)
        if self.pos_embed is not None:
            pos_table = self.pos_embed.embedding[...]
            at = positions if pad is None else positions - pad[:, None]
            h = h + jnp.take(pos_table, at, axis=0, mode="clip").astype(h.dtype)
        new_cache = [] if cache is not None else None
        for i, block in enumerate(self.layers):
            h, layer_cache = block(h, positions, None if cache is None else cache[i],
                                   None if prefix is None else prefix[i], pad)
            if cache is not None:
                new_cache.append(layer_cache)
        h = self.final_norm(h)
        if hidden:
            return h, (tuple(new_cache) if cache is not None else None)
        logits = (self.embed.attend(h) if self.lm_head is None else self.lm_head(h)).astype(jnp.float32)
        if c.final_logit_softcap is not None:
            logits = c.final_logit_softcap * jnp.tanh(logits / c.final_logit_softcap)
        return logits, (tuple(new_cache) if cache is not None else None)
