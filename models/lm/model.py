"""``LanguageModel``: the functional wrapper that satisfies the LM protocol of ``ppl.lm``.

The protocol (``vocab_size``, ``eos_token_id``, ``params``, ``init_cache``, ``apply``,
``tokenizer``) lets ``ppl`` drive any LM without importing ``models``. Here the nnx
:class:`~ppl_models.lm.transformer.Transformer` is split once into a static ``graphdef`` and a
``params`` pytree; :attr:`LanguageModel.apply` merges them inside the (traced) call, so new
weights of the same shapes never recompile, and the object itself is hashable by identity
(usable as a static argument).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .cache import KVCache, init_cache_for
from .config import LMConfig
from .transformer import Transformer

__all__ = ["LanguageModel", "random_lm"]


class LanguageModel:
    """A transformer LM as data (``params``) plus pure functions (``apply``, ``init_cache``).

    Attributes:
      config: the :class:`LMConfig`.
      vocab_size: ``config.vocab_size``.
      eos_token_id: ``config.eos_token_id`` (``None`` if the model has none).
      bos_token_id: ``config.bos_token_id``.
      params: the parameter pytree (an ``nnx.State``); pass it to :attr:`apply` as data.
      graphdef: the static structure of the module.
      tokenizer: a ``tokenizers.Tokenizer`` or ``None``.
      dtype: the compute dtype (also the default cache dtype).

    ``apply(params, tokens: int[B, S], positions: int[B, S], cache) -> (logits f32[B, S, V], cache)``
    is a pure, jit- and vmap-able function; ``apply(params, tokens, positions, None)`` runs
    without a cache (the chunk attends to itself only).
    ``apply_with_prefix(params, tokens, positions, prefix, cache)`` reads a prefix cache shared by
    all rows (the prompt's, stored once) besides each row's own ``cache`` of the later positions.
    Each takes ``pad=int[B]`` for left-padded rows (the attention mask; see ``Transformer.__call__``).
    """

    def __init__(self, module: Transformer, tokenizer=None):
        if not isinstance(module, Transformer):
            raise TypeError(f"LanguageModel: expected a ppl_models.lm.Transformer, got {type(module).__name__}.")
        self.config: LMConfig = module.config
        self.dtype = module.dtype
        self.graphdef, self.params = nnx.split(module)
        self.tokenizer = tokenizer
        graphdef = self.graphdef

        def apply(params, tokens, positions, cache, pad=None):
            return nnx.merge(graphdef, params)(tokens, positions, cache, pad=pad)

        def apply_with_prefix(params, tokens, positions, prefix, cache, pad=None):
            return nnx.merge(graphdef, params)(tokens, positions, cache, prefix, pad=pad)

        apply.__doc__ = Transformer.__call__.__doc__
        apply_with_prefix.__doc__ = (
            "``apply`` with a shared ``prefix`` cache (batch size 1, positions ``0..F-1``) read by every row; "
            "``cache`` holds the rows' positions from ``F`` on (see ``Transformer.__call__``).")
        def apply_hidden(params, tokens, positions, cache, pad=None):
            return nnx.merge(graphdef, params)(tokens, positions, cache, None, True, pad)

        apply_hidden.__doc__ = "``apply``, returning the final-normed hidden states ``[B, S, D]`` instead of logits."
        # One function object per LanguageModel: `lm.apply is lm.apply`, so jit caches hit.
        self.apply = apply
        self.apply_hidden = apply_hidden
        self.apply_with_prefix = apply_with_prefix

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def eos_token_id(self) -> int | None:
        return self.config.eos_token_id

    @property
    def eos_token_ids(self) -> tuple:
        """Every end-of-sequence id (``eos_token_id`` first; empty if none)."""
        c = self.config
        return () if c.eos_token_id is None else (c.eos_token_id, *c.extra_eos_token_ids)

    @property
    def bos_token_id(self) -> int | None:
        return self.config.bos_token_id

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
        """Zero KV cache: per layer ``LayerCache(k, v)`` of shape ``[batch_size, H_kv, max_length, D_h]``."""
        return init_cache_for(self.config, batch_size, max_length, self.dtype if dtype is None else dtype)

    def module(self, params=None) -> Transformer:
        """The nnx module with ``params`` (default: :attr:`params`)."""
        return nnx.merge(self.graphdef, self.params if params is None else params)

    def with_params(self, params) -> LanguageModel:
        """A new ``LanguageModel`` sharing structure and tokenizer, with other ``params``."""
        return LanguageModel(self.module(params), tokenizer=self.tokenizer)

    def __repr__(self):
        c = self.config
        return (f"LanguageModel(model_type={c.model_type!r}, layers={c.num_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_heads}/{c.num_kv_heads}, vocab={c.vocab_size}, params={c.num_params:,})")


def random_lm(config: LMConfig, seed: int = 0, *, dtype=jnp.float32, param_dtype=jnp.float32,
              tokenizer=None, std: float | None = None) -> LanguageModel:
    """A randomly initialized :class:`LanguageModel`: weights ~ N(0, 0.02²), biases 0, norm scales 1.

    With ``std`` set, *every* parameter is drawn with that standard deviation (norm scales
    around 1, biases around 0): useful in tests, where zero biases and unit scales would hide a
    wrongly mapped tensor. Parameters are drawn with numpy (``seed``) on the host, which is much
    faster than eager per-parameter initialization for tiny models.
    """
    module = nnx.eval_shape(lambda: Transformer(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(module):
        if not isinstance(var, nnx.Param):
            continue
        name = path[-1]
        shape, pdt = var.get_value().shape, var.get_value().dtype
        if name == "scale":
            value = np.ones(shape) + (0.0 if std is None else std * rng.standard_normal(shape))
        elif name == "bias":
            value = np.zeros(shape) if std is None else std * rng.standard_normal(shape)
        else:
            value = (0.02 if std is None else std) * rng.standard_normal(shape)
        var.set_value(jnp.asarray(value, dtype=pdt))
    return LanguageModel(module, tokenizer=tokenizer)
