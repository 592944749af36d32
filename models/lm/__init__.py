"""Transformer LMs with a KV cache, in flax nnx, and Hugging Face–format checkpoints.

Public API:

* :class:`LMConfig` — architecture hyper-parameters (GPT-2, Llama, Qwen2 families);
  :meth:`LMConfig.from_hf` / :meth:`LMConfig.to_hf` map ``config.json``.
* :class:`Transformer` — the nnx module; ``logits, cache = model(tokens, positions, cache)``.
* :class:`LanguageModel` — the functional wrapper satisfying the ``ppl.lm`` LM protocol
  (``vocab_size``, ``eos_token_id``, ``params``, ``init_cache``, ``apply``, ``tokenizer``).
* :func:`random_lm` — a randomly initialized model; :func:`load_pretrained` /
  :func:`save_pretrained` — local HF-format folders (safetensors only, never pickles).
* :class:`LayerCache`, :func:`init_cache`, :func:`gather_cache` — the KV cache pytree.
"""

from .cache import KVCache, LayerCache, gather_cache, init_cache
from .checkpoint import hf_tensor_map, load_pretrained, save_pretrained
from .config import SUPPORTED_MODEL_TYPES, LMConfig
from .model import LanguageModel, random_lm
from .transformer import Transformer

__all__ = [
    "LMConfig",
    "SUPPORTED_MODEL_TYPES",
    "Transformer",
    "LanguageModel",
    "random_lm",
    "load_pretrained",
    "save_pretrained",
    "hf_tensor_map",
    "KVCache",
    "LayerCache",
    "init_cache",
    "gather_cache",
]

