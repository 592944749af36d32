"""``LMConfig``: the hyper-parameters of a decoder-only transformer, and the mapping to and from
Hugging Face ``config.json`` files of model type ``gpt2``, ``llama`` and ``qwen2``.

One frozen dataclass covers both families:

* GPT-2: ``position="learned"``, ``norm="layernorm"``, ``activation="gelu_new"`` with a plain
  MLP, ``num_kv_heads == num_heads``, biases on every projection, tied embeddings.
* Llama: ``position="rotary"`` (``rope_theta``), ``norm="rmsnorm"``, SiLU-gated MLP,
  grouped-query attention (``num_kv_heads <= num_heads``), no biases (unless
  ``attention_bias`` / ``mlp_bias``), tied or untied head.
* Qwen2: Llama with a bias on the query/key/value projections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["LMConfig", "SUPPORTED_MODEL_TYPES"]

SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2")
_POSITIONS = ("learned", "rotary")
_NORMS = ("layernorm", "rmsnorm", "rmsnorm_offset")
_ACTIVATIONS = ("gelu_new", "gelu", "relu", "silu")
# Hugging Face names of the activations we implement -> ours.
_HF_ACTIVATIONS = {
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


@dataclasses.dataclass(frozen=True)
class LMConfig:
    r"""Hyper-parameters of a decoder-only transformer LM (hashable, so usable as static data).

    Attributes:
      vocab_size: number of token ids ``V``.
      hidden_size: model width ``D``.
      num_layers: number of transformer blocks.
      num_heads: number of query heads ``H``.
      num_kv_heads: number of key/value heads ``H_kv`` (``H % H_kv == 0``; ``H_kv < H`` is
        grouped-query attention, query head ``h`` reads key/value head ``h // (H / H_kv)``).
      head_dim: per-head width ``D_h`` (``None``: ``D / H``).
      intermediate_size: MLP width (``None``: ``4 D``).
      max_position_embeddings: longest sequence; the size of the learned position table.
      position: ``"learned"`` (absolute position table) or ``"rotary"`` (RoPE, ``rope_theta``).
      rope_theta: RoPE base ``theta``.
      rope_scaling: ``None`` (plain RoPE) or Llama 3's frequency scaling, ``("llama3", factor,
        low_freq_factor, high_freq_factor, original_max_position_embeddings)``
        (:func:`ppl_models.lm.transformer.rope_frequencies`).
      norm: ``"layernorm"``, ``"rmsnorm"`` or ``"rmsnorm_offset"`` (Gemma: RMSNorm scaled by
        :math:`1 + w`); ``norm_eps`` its epsilon.
      activation: ``"gelu_new"`` (tanh-approximate GELU), ``"gelu"``, ``"relu"`` or ``"silu"``.
      gated_mlp: ``down(act(gate(x)) * up(x))`` (Llama) instead of ``down(act(up(x)))`` (GPT-2).
      qkv_bias, o_bias, mlp_bias: whether those projections carry a bias.
      qk_norm: RMSNorm of each query and key head over ``D_h`` before RoPE (Qwen3).
      sliding_window: ``W``: a position attends to the ``W`` latest positions only (itself
        included: key position :math:`> q - W`; Mistral), in every layer, or in ``local_layers``
        only (Gemma 2: every other layer); ``None``: all before it.
      embed_scale: multiply the token embeddings by :math:`\sqrt{D}` (Gemma).
      sandwich_norms: norms after the attention and around the MLP too (Gemma 2):
        ``h + post(attn(pre(h)))``, ``h + post_mlp(mlp(pre_mlp(h)))``.
      query_pre_attn_scalar: attention scale :math:`s^{-1/2}` instead of :math:`D_h^{-1/2}` (Gemma 2).
      attn_logit_softcap, final_logit_softcap: :math:`c \tanh(z / c)` of the attention scores and
        of the output logits (Gemma 2); ``None``: none.
      tie_word_embeddings: the output head is the transposed token embedding.
      bos_token_id, eos_token_id: special token ids (``None`` if the model has none).
      extra_eos_token_ids: further end-of-sequence ids (Llama 3 lists several in ``config.json``;
        ``generation_config.json`` may add more): generation stops at any of them.
      model_type: ``"gpt2"``, ``"llama"``, ``"qwen2"`` (selects the Hugging Face tensor names
        used by :func:`ppl_models.lm.load_pretrained` / :func:`ppl_models.lm.save_pretrained`), or
        ``None`` for a custom architecture that is not saved in HF format.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None
    max_position_embeddings: int = 2048
    position: str = "rotary"
    rope_theta: float = 10000.0
    rope_scaling: tuple | None = None
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    activation: str = "silu"
    gated_mlp: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    local_layers: tuple | None = None
    embed_scale: bool = False
    sandwich_norms: bool = False
    query_pre_attn_scalar: float | None = None
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    extra_eos_token_ids: tuple = ()
    model_type: str | None = "llama"

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "max_position_embeddings"):
            _check_positive_int(name, getattr(self, name))
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        _check_positive_int("num_kv_heads", self.num_kv_heads)
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"LMConfig: hidden_size={self.hidden_size} is not divisible by num_heads="
                    f"{self.num_heads}; pass head_dim explicitly."
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        _check_positive_int("head_dim", self.head_dim)
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        _check_positive_int("intermediate_size", self.intermediate_size)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"LMConfig: num_heads={self.num_heads} must be a multiple of num_kv_heads="
                f"{self.num_kv_heads} (grouped-query attention)."
            )
        _check_choice("position", self.position, _POSITIONS)
        _check_choice("norm", self.norm, _NORMS)
        _check_choice("activation", self.activation, _ACTIVATIONS)
        if self.position == "rotary" and self.head_dim % 2:
            raise ValueError(f"LMConfig: rotary positions need an even head_dim, got {self.head_dim}.")
        if not self.rope_theta > 0:
            raise ValueError(f"LMConfig: rope_theta must be > 0, got {self.rope_theta}.")
        if self.rope_scaling is not None:
            s = tuple(self.rope_scaling)
            ok = (len(s) == 5 and s[0] == "llama3" and all(isinstance(v, (int, float)) and v > 0 for v in s[1:])
                  and s[3] > s[2])
            if not ok:
                raise ValueError("LMConfig: rope_scaling must be None or ('llama3', factor, low_freq_factor, "
                                 f"high_freq_factor > low_freq_factor, original_max_position_embeddings), got {s!r}.")
            object.__setattr__(self, "rope_scaling", ("llama3", *(float(v) for v in s[1:4]), int(s[4])))
        if not self.norm_eps > 0:
            raise ValueError(f"LMConfig: norm_eps must be > 0, got {self.norm_eps}.")
        if self.sliding_window is not None:
            _check_positive_int("sliding_window", self.sliding_window)
        if self.local_layers is not None:
            layers = tuple(int(i) for i in self.local_layers)
            if self.sliding_window is None or any(not 0 <= i < self.num_layers for i in layers):
                raise ValueError(f"LMConfig: local_layers={self.local_layers!r} needs a sliding_window and layer "
                                 f"indices in [0, {self.num_layers}).")
            object.__setattr__(self, "local_layers", layers)
        for name in ("query_pre_attn_scalar", "attn_logit_softcap", "final_logit_softcap"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"LMConfig: {name} must be None or > 0, got {v!r}.")
        for name in ("bos_token_id", "eos_token_id"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 0 <= v < self.vocab_size):
                raise ValueError(f"LMConfig: {name}={v!r} is not a token id in [0, {self.vocab_size}).")
        extra = tuple(self.extra_eos_token_ids)
        if extra and self.eos_token_id is None:
            raise ValueError("LMConfig: extra_eos_token_ids need an eos_token_id.")
        for v in extra:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.vocab_size:
                raise ValueError(f"LMConfig: extra_eos_token_ids holds {v!r}, not a token id in [0, {self.vocab_size}).")
        object.__setattr__(self, "extra_eos_token_ids", tuple(dict.fromkeys(v for v in extra if v != self.eos_token_id)))
        if self.model_type is not None:
            _check_choice("model_type", self.model_type, SUPPORTED_MODEL_TYPES)

    # ------------------------------------------------------------------ presets
    @classmethod
    def gpt2(cls, **overrides) -> LMConfig:
        """A GPT-2 style config (GPT-2 small by default); keyword arguments override fields."""
        base = dict(
            vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=None,
            max_position_embeddings=1024, position="learned", norm="layernorm", norm_eps=1e-5,
            activation="gelu_new", gated_mlp=False, qkv_bias=True, o_bias=True, mlp_bias=True,
            tie_word_embeddings=True, bos_token_id=50256, eos_token_id=50256, model_type="gpt2",
        )
        return cls(**_preset(base, overrides))

    @classmethod
    def llama(cls, **overrides) -> LMConfig:
        """A Llama style config (rotary, RMSNorm, SiLU-gated MLP, no biases)."""
        base = dict(
            vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=None,
            intermediate_size=11008, max_position_embeddings=2048, position="rotary",
            rope_theta=10000.0, norm="rmsnorm", norm_eps=1e-6, activation="silu", gated_mlp=True,
            qkv_bias=False, o_bias=False, mlp_bias=False, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, model_type="llama",
        )
        return cls(**_preset(base, overrides))

    @classmethod
    def qwen2(cls, **overrides) -> LMConfig:
        """A Qwen2 style config: Llama with a bias on the q/k/v projections."""
        base = dict(
            vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
            intermediate_size=4864, max_position_embeddings=32768, position="rotary",
            rope_theta=1000000.0, norm="rmsnorm", norm_eps=1e-6, activation="silu", gated_mlp=True,
            qkv_bias=True, o_bias=False, mlp_bias=False, tie_word_embeddings=True,
            bos_token_id=None, eos_token_id=None, model_type="qwen2",
        )
        return cls(**_preset(base, overrides))

    # ------------------------------------------------------------------ Hugging Face
    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> LMConfig:
        """Map a Hugging Face ``config.json`` dict of model type gpt2, llama or qwen2.

        Raises ``ValueError`` naming the field for an unsupported ``model_type``, a missing
        required key, or a feature we do not implement (RoPE scaling, sliding-window attention,
        GPT-2 attention variants).
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"LMConfig.from_hf expects a dict (parsed config.json), got {type(config).__name__}.")
        model_type = config.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"config.json: model_type={model_type!r} is not supported; supported model types are "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}."
            )
        if model_type == "gpt2":
            return _from_hf_gpt2(config)
        return _from_hf_llama(config, model_type)

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict of this config (inverse of :meth:`from_hf`).

        Raises ``ValueError`` if the config does not fit its ``model_type`` family (e.g. a
        GPT-2 with rotary positions cannot be written in HF GPT-2 format).
        """
        self.check_hf_family()
        common = dict(
            vocab_size=self.vocab_size,
            bos_token_id=self.bos_token_id,
            eos_token_id=[self.eos_token_id, *self.extra_eos_token_ids] if self.extra_eos_token_ids else self.eos_token_id,
            tie_word_embeddings=self.tie_word_embeddings,
            dtype="float32",
        )
        if self.model_type == "gpt2":
            return dict(
                model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=self.hidden_size,
                n_layer=self.num_layers, n_head=self.num_heads, n_inner=self.intermediate_size,
                n_positions=self.max_position_embeddings, activation_function=self.activation,
                layer_norm_epsilon=self.norm_eps, scale_attn_weights=True,
                scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False, **common,
            )
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                "mistral": "MistralForCausalLM", "phi3": "Phi3ForCausalLM",
                "gemma2": "Gemma2ForCausalLM"}[self.model_type]
        out = dict(
            model_type=self.model_type, architectures=[arch], hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings, hidden_act=self.activation,
            rms_norm_eps=self.norm_eps, rope_theta=self.rope_theta,
            rope_parameters=self._rope_parameters(), **common,
        )
        if self.model_type == "llama":
            out.update(attention_bias=self.qkv_bias, mlp_bias=self.mlp_bias)
        elif self.model_type == "qwen3":
            out.update(attention_bias=self.qkv_bias, use_sliding_window=False)
        elif self.model_type == "gemma2":
            local = set(self.local_layers if self.local_layers is not None else range(self.num_layers))
            out.update(hidden_activation=self.activation, attention_bias=self.qkv_bias, sliding_window=self.sliding_window,
                       layer_types=["sliding_attention" if i in local else "full_attention" for i in range(self.num_layers)],
                       query_pre_attn_scalar=_int_if_whole(self.query_pre_attn_scalar),
                       attn_logit_softcapping=self.attn_logit_softcap,
                       final_logit_softcapping=self.final_logit_softcap, pad_token_id=None)
            out["hidden_activation"] = "gelu_pytorch_tanh" if self.activation == "gelu_new" else self.activation
        elif self.model_type in ("mistral", "phi3"):
            out.update(sliding_window=self.sliding_window)
            if self.model_type == "phi3":  # (its config class defaults to pad 32000, past a small vocabulary)
                out.update(pad_token_id=None, original_max_position_embeddings=self.max_position_embeddings)
        else:
            out.update(use_sliding_window=False)
        return out

    def _rope_parameters(self) -> dict:
        if self.rope_scaling is None:
            return {"rope_type": "default", "rope_theta": self.rope_theta}
        _, factor, low, high, original = self.rope_scaling
        return {"rope_type": "llama3", "rope_theta": self.rope_theta, "factor": factor, "low_freq_factor": low,
                "high_freq_factor": high, "original_max_position_embeddings": original}

    def check_hf_family(self) -> None:
        """Raise ``ValueError`` if this config cannot be expressed as its HF ``model_type``."""
        if self.model_type is None:
            raise ValueError("LMConfig: model_type=None has no Hugging Face format; set model_type.")
        if self.model_type == "gpt2":
            want = dict(position="learned", norm="layernorm", gated_mlp=False, qkv_bias=True,
                        o_bias=True, mlp_bias=True, num_kv_heads=self.num_heads,
                        head_dim=self.hidden_size // self.num_heads)
        else:
            gemma = self.model_type == "gemma2"
            want = dict(position="rotary", norm="rmsnorm_offset" if gemma else "rmsnorm", gated_mlp=True,
                        qk_norm=self.model_type == "qwen3", embed_scale=gemma, sandwich_norms=gemma)
            if not gemma:
                want.update(query_pre_attn_scalar=None, attn_logit_softcap=None, final_logit_softcap=None,
                            local_layers=None)
            if self.model_type not in ("mistral", "phi3", "gemma2"):
                want.update(sliding_window=None)
            if self.model_type == "llama":
                want.update(o_bias=self.qkv_bias)
            elif self.model_type == "qwen2":
                want.update(qkv_bias=True, o_bias=False, mlp_bias=False)
            else:  # qwen3, gemma2 (attention_bias on q/k/v/o alike), mistral, phi3 (no biases)
                want.update(o_bias=self.qkv_bias, mlp_bias=False)
                if self.model_type in ("mistral", "phi3"):
                    want.update(qkv_bias=False)
        for name, value in want.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"LMConfig: model_type={self.model_type!r} needs {name}={value!r}, got "
                    f"{getattr(self, name)!r}."
                )
        if self.model_type == "gpt2" and self.hidden_size % self.num_heads:
            raise ValueError("LMConfig: model_type='gpt2' needs hidden_size divisible by num_heads.")

    @property
    def num_params(self) -> int:
        """Number of parameters of the transformer with this config."""
        d, h, kv, dh, f = self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim, self.intermediate_size
        attn = d * h * dh + 2 * d * kv * dh + h * dh * d
        attn += (h * dh + 2 * kv * dh) * self.qkv_bias + d * self.o_bias
        mlp = (3 if self.gated_mlp else 2) * d * f + (((2 if self.gated_mlp else 1) * f + d) * self.mlp_bias)
        norm = d * (2 if self.norm == "layernorm" else 1)
        per_layer = attn + mlp + 2 * norm
        total = self.num_layers * per_layer + norm + self.vocab_size * d
        if self.position == "learned":
            total += self.max_position_embeddings * d
        if not self.tie_word_embeddings:
            total += self.vocab_size * d
        return total


# ---------------------------------------------------------------------- helpers
def _preset(base, overrides):
    out = {**base, **overrides}
    for name in ("bos_token_id", "eos_token_id"):  # preset ids that do not fit a smaller vocabulary
        if name not in overrides and out[name] is not None and out[name] >= out["vocab_size"]:
            out[name] = None
    return out


def _int_if_whole(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"LMConfig: {name} must be a positive int, got {value!r}.")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"LMConfig: {name}={value!r} is not one of {choices}.")


def _require(config, key, model_type):
    if key not in config or config[key] is None:
        raise ValueError(f"config.json (model_type={model_type!r}): missing required key {key!r}.")
    return config[key]


def _token_id(config, key):
    v = config.get(key)
    if isinstance(v, (list, tuple)):  # e.g. Llama 3 lists several EOS ids: the first (the others: _extra_eos)
        v = v[0] if v else None
    return v


def _extra_eos(config):
    v = config.get("eos_token_id")
    return tuple(v[1:]) if isinstance(v, (list, tuple)) else ()


def _activation(config, key, model_type, default):
    name = config.get(key, default)
    if name not in _HF_ACTIVATIONS:
        raise ValueError(
            f"config.json (model_type={model_type!r}): {key}={name!r} is not supported; "
            f"supported: {sorted(_HF_ACTIVATIONS)}."
        )
    return _HF_ACTIVATIONS[name]


def _from_hf_gpt2(c):
    mt = "gpt2"
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("reorder_and_upcast_attn", False), ("add_cross_attention", False)):
        if key in c and bool(c[key]) != ok:
            raise ValueError(f"config.json (model_type='gpt2'): {key}={c[key]!r} is not supported (need {ok}).")
    hidden = _require(c, "n_embd", mt)
    return LMConfig.gpt2(
        vocab_size=_require(c, "vocab_size", mt),
        hidden_size=hidden,
        num_layers=_require(c, "n_layer", mt),
        num_heads=_require(c, "n_head", mt),
        intermediate_size=c.get("n_inner") or 4 * hidden,
        max_position_embeddings=_require(c, "n_positions", mt),
        norm_eps=float(c.get("layer_norm_epsilon", 1e-5)),
        activation=_activation(c, "activation_function", mt, "gelu_new"),
        tie_word_embeddings=bool(c.get("tie_word_embeddings", True)),
        bos_token_id=_token_id(c, "bos_token_id"),
        eos_token_id=_token_id(c, "eos_token_id"),
        extra_eos_token_ids=_extra_eos(c),
    )


def _rope(c, mt):
    """``(rope_theta, rope_scaling)`` from ``rope_parameters`` (transformers 5) or the older
    ``rope_theta`` / ``rope_scaling`` keys."""
    params = c.get("rope_parameters") or {}
    scaling = c.get("rope_scaling") or {}
    theta = float(params["rope_theta"]) if "rope_theta" in params else float(c.get("rope_theta", 10000.0))
    out = None
    for src_name, src in (("rope_parameters", params), ("rope_scaling", scaling)):
        kind = src.get("rope_type", src.get("type", "default"))
        if kind == "default":
            continue
        if kind != "llama3":
            raise ValueError(f"config.json (model_type={mt!r}): {src_name} with rope_type={kind!r} is not "
                             "supported (the default RoPE and 'llama3').")
        try:
            out = ("llama3", float(src["factor"]), float(src["low_freq_factor"]), float(src["high_freq_factor"]),
                   int(src["original_max_position_embeddings"]))
        except KeyError as e:
            raise ValueError(f"config.json (model_type={mt!r}): {src_name} of rope_type 'llama3' misses "
                             f"{e.args[0]!r}.") from None
    return theta, out


def _from_hf_llama(c, mt):
    if mt in ("qwen2", "qwen3") and c.get("use_sliding_window", False) and "sliding_attention" in (
            c.get("layer_types") or ["sliding_attention"]):
        raise ValueError(f"config.json (model_type={mt!r}): use_sliding_window=True is not supported.")
    act = _activation(c, "hidden_act", mt, "silu")
    heads = _require(c, "num_attention_heads", mt)
    hidden = _require(c, "hidden_size", mt)
    kw = dict(
        vocab_size=_require(c, "vocab_size", mt),
        hidden_size=hidden,
        num_layers=_require(c, "num_hidden_layers", mt),
        num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or hidden // heads,
        intermediate_size=_require(c, "intermediate_size", mt),
        max_position_embeddings=c.get("max_position_embeddings", 2048),
        rope_theta=_rope(c, mt)[0],
        rope_scaling=_rope(c, mt)[1],
        norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        activation=act,
        tie_word_embeddings=bool(c.get("tie_word_embeddings", False)),
        bos_token_id=_token_id(c, "bos_token_id"),
        eos_token_id=_token_id(c, "eos_token_id"),
        extra_eos_token_ids=_extra_eos(c),
    )
    if mt == "llama":
        bias = bool(c.get("attention_bias", False))
        return LMConfig.llama(qkv_bias=bias, o_bias=bias, mlp_bias=bool(c.get("mlp_bias", False)), **kw)
    if mt == "qwen3":
        bias = bool(c.get("attention_bias", False))
        return LMConfig.llama(qkv_bias=bias, o_bias=bias, qk_norm=True, model_type="qwen3", **kw)
    if mt == "gemma2":
        types = c.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                         for i in range(kw["num_layers"])]
        window = c.get("sliding_window")
        bias = bool(c.get("attention_bias", False))
        kw.update(activation=_activation(c, "hidden_activation", mt, "gelu_pytorch_tanh"),
                  tie_word_embeddings=bool(c.get("tie_word_embeddings", True)))
        return LMConfig.llama(**{**kw, "norm": "rmsnorm_offset"}, qkv_bias=bias, o_bias=bias, model_type="gemma2",
                              embed_scale=True, sandwich_norms=True,
                              sliding_window=int(window) if window else None,
                              local_layers=tuple(i for i, t in enumerate(types) if t == "sliding_attention")
                              if window else None,
                              query_pre_attn_scalar=c.get("query_pre_attn_scalar"),
                              attn_logit_softcap=c.get("attn_logit_softcapping"),
                              final_logit_softcap=c.get("final_logit_softcapping"))
    if mt in ("mistral", "phi3"):
        if mt == "phi3" and float(c.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError(f"config.json (model_type='phi3'): partial_rotary_factor="
                             f"{c['partial_rotary_factor']!r} is not supported (only 1.0).")
        window = c.get("sliding_window")
        return LMConfig.llama(sliding_window=int(window) if window else None, model_type=mt, **kw)
    return LMConfig.qwen2(**kw)
