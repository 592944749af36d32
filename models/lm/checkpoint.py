"""Hugging Face–format checkpoints: ``load_pretrained`` / ``save_pretrained``.

A checkpoint folder holds ``config.json`` (model type ``gpt2``, ``llama`` or ``qwen2``), the
weights as ``model.safetensors`` or as shards listed in ``model.safetensors.index.json``, and
optionally ``tokenizer.json`` (loaded with the ``tokenizers`` library). Pickle-based weights
(``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``) are refused: they can run arbitrary code.

Tensor names follow the Hugging Face PyTorch models. Two layouts differ from ours:

* ``torch.nn.Linear`` (Llama/Qwen2, and GPT-2's ``lm_head``) stores ``weight: [out, in]``;
  our kernels are ``[in, out]``, so these are transposed.
* GPT-2's ``Conv1D`` already stores ``weight: [in, out]`` (no transpose), and fuses the query,
  key and value projections into ``attn.c_attn`` (``[D, 3D]``, split into thirds).

Every expected tensor is checked (present, right shape) from the file headers before any data
is read; a mismatch raises ``ValueError`` naming the tensor, the expected and the found shape.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .config import LMConfig
from .model import LanguageModel
from .transformer import Transformer

__all__ = ["load_pretrained", "save_pretrained", "hf_tensor_map", "PICKLE_SUFFIXES"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_SINGLE = "model.safetensors"
_INDEX = "model.safetensors.index.json"


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One Hugging Face tensor and the parameter(s) of ours it fills.

    ``kind``: ``"id"`` (same layout), ``"T"`` (transposed ``nn.Linear`` weight), ``"qkv"``
    (GPT-2's fused ``c_attn``: split into thirds along the last axis, into ``targets`` q, k, v)
    or ``"T_rows"`` (Phi-3's fused ``qkv_proj`` / ``gate_up_proj``: rows split into ``sizes``,
    each transposed).
    """

    name: str
    shape: tuple[int, ...]
    targets: tuple[tuple, ...]
    kind: str = "id"
    sizes: tuple = ()


def hf_tensor_map(config: LMConfig) -> list[TensorEntry]:
    """The Hugging Face tensors a model with ``config`` has, in HF naming (GPT-2 without prefix)."""
    config.check_hf_family()
    return _gpt2_entries(config) if config.model_type == "gpt2" else _llama_entries(config)


def _gpt2_entries(c: LMConfig) -> list[TensorEntry]:
    d, f, v = c.hidden_size, c.intermediate_size, c.vocab_size
    E = TensorEntry
    out = [E("wte.weight", (v, d), (("embed", "embedding"),)),
           E("wpe.weight", (c.max_position_embeddings, d), (("pos_embed", "embedding"),))]
    for i in range(c.num_layers):
        p, L = f"h.{i}.", ("layers", i)
        attn = L + ("attn",)
        out += [
            E(p + "ln_1.weight", (d,), (L + ("attn_norm", "scale"),)),
            E(p + "ln_1.bias", (d,), (L + ("attn_norm", "bias"),)),
            E(p + "attn.c_attn.weight", (d, 3 * d), tuple(attn + (n, "kernel") for n in "qkv"), "qkv"),
            E(p + "attn.c_attn.bias", (3 * d,), tuple(attn + (n, "bias") for n in "qkv"), "qkv"),
            E(p + "attn.c_proj.weight", (d, d), (attn + ("o", "kernel"),)),
            E(p + "attn.c_proj.bias", (d,), (attn + ("o", "bias"),)),
            E(p + "ln_2.weight", (d,), (L + ("mlp_norm", "scale"),)),
            E(p + "ln_2.bias", (d,), (L + ("mlp_norm", "bias"),)),
            E(p + "mlp.c_fc.weight", (d, f), (L + ("mlp", "up", "kernel"),)),
            E(p + "mlp.c_fc.bias", (f,), (L + ("mlp", "up", "bias"),)),
            E(p + "mlp.c_proj.weight", (f, d), (L + ("mlp", "down", "kernel"),)),
            E(p + "mlp.c_proj.bias", (d,), (L + ("mlp", "down", "bias"),)),
        ]
    out += [E("ln_f.weight", (d,), (("final_norm", "scale"),)),
            E("ln_f.bias", (d,), (("final_norm", "bias"),))]
    if not c.tie_word_embeddings:
        out.append(E("lm_head.weight", (v, d), (("lm_head", "kernel"),), "T"))
    return out


def _llama_entries(c: LMConfig) -> list[TensorEntry]:
    d, f, v = c.hidden_size, c.intermediate_size, c.vocab_size
    q_out, kv_out = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    E = TensorEntry
    out = [E("model.embed_tokens.weight", (v, d), (("embed", "embedding"),))]
    for i in range(c.num_layers):
        p, L = f"model.layers.{i}.", ("layers", i)
        out.append(E(p + "input_layernorm.weight", (d,), (L + ("attn_norm", "scale"),)))
        if c.model_type == "phi3":  # fused q/k/v and gate/up projections
            attn, mlp = L + ("attn",), L + ("mlp",)
            out += [E(f"{p}self_attn.qkv_proj.weight", (q_out + 2 * kv_out, d),
                      tuple(attn + (n, "kernel") for n in "qkv"), "T_rows", (q_out, kv_out, kv_out)),
                    E(f"{p}self_attn.o_proj.weight", (d, q_out), (attn + ("o", "kernel"),), "T"),
                    E(p + "post_attention_layernorm.weight", (d,), (L + ("mlp_norm", "scale"),)),
                    E(f"{p}mlp.gate_up_proj.weight", (2 * f, d), (mlp + ("gate", "kernel"), mlp + ("up", "kernel")),
                      "T_rows", (f, f)),
                    E(f"{p}mlp.down_proj.weight", (d, f), (mlp + ("down", "kernel"),), "T")]
            continue
        for hf, ours, dout, din, bias in (("q_proj", "q", q_out, d, c.qkv_bias), ("k_proj", "k", kv_out, d, c.qkv_bias),
                                          ("v_proj", "v", kv_out, d, c.qkv_bias), ("o_proj", "o", d, q_out, c.o_bias)):
            out.append(E(f"{p}self_attn.{hf}.weight", (dout, din), (L + ("attn", ours, "kernel"),), "T"))
            if bias:
                out.append(E(f"{p}self_attn.{hf}.bias", (dout,), (L + ("attn", ours, "bias"),)))
        if c.qk_norm:
            out += [E(f"{p}self_attn.q_norm.weight", (c.head_dim,), (L + ("attn", "q_norm", "scale"),)),
                    E(f"{p}self_attn.k_norm.weight", (c.head_dim,), (L + ("attn", "k_norm", "scale"),))]
        if c.sandwich_norms:  # Gemma 2: post_attention_layernorm follows the attention
            out += [E(p + "post_attention_layernorm.weight", (d,), (L + ("post_attn_norm", "scale"),)),
                    E(p + "pre_feedforward_layernorm.weight", (d,), (L + ("mlp_norm", "scale"),)),
                    E(p + "post_feedforward_layernorm.weight", (d,), (L + ("post_mlp_norm", "scale"),))]
        else:
            out.append(E(p + "post_attention_layernorm.weight", (d,), (L + ("mlp_norm", "scale"),)))
        for hf, ours, dout, din in (("gate_proj", "gate", f, d), ("up_proj", "up", f, d), ("down_proj", "down", d, f)):
            out.append(E(f"{p}mlp.{hf}.weight", (dout, din), (L + ("mlp", ours, "kernel"),), "T"))
            if c.mlp_bias:
                out.append(E(f"{p}mlp.{hf}.bias", (dout,), (L + ("mlp", ours, "bias"),)))
    out.append(E("model.norm.weight", (d,), (("final_norm", "scale"),)))
    if not c.tie_word_embeddings:
        out.append(E("lm_head.weight", (v, d), (("lm_head", "kernel"),), "T"))
    return out


def _ignorable(name: str, config: LMConfig) -> bool:
    """Buffers and tied copies that checkpoints may carry and we do not need."""
    if name.endswith(("attn.bias", "attn.masked_bias")) and config.model_type == "gpt2":
        return True  # GPT-2's stored causal-mask buffers
    if name.endswith("rotary_emb.inv_freq"):
        return True
    return config.tie_word_embeddings and name == "lm_head.weight"


def _variable(module, path):
    obj = module
    for p in path:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    return obj


# ---------------------------------------------------------------------- loading
def _refuse_pickle(path: Path):
    raise ValueError(
        f"{path}: refusing to load a pickle-based checkpoint ({path.suffix}); pickles can run "
        "arbitrary code. Convert it to safetensors (e.g. in PyTorch: "
        "model.save_pretrained(folder, safe_serialization=True)) and load that folder."
    )


def _weight_files(folder: Path) -> dict[str, Path] | list[Path]:
    """Either a name -> file map (sharded index) or a list of safetensors files."""
    index = folder / _INDEX
    if index.is_file():
        with open(index) as fh:
            weight_map = json.load(fh).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: no 'weight_map' object.")
        files = {}
        for name, fname in weight_map.items():
            fpath = folder / fname
            if not fpath.is_file():
                raise ValueError(f"{index}: shard {fname!r} (holding tensor {name!r}) does not exist.")
            files[name] = fpath
        return files
    single = folder / _SINGLE
    if single.is_file():
        return [single]
    others = sorted(folder.glob("*.safetensors"))
    if others:
        return others
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        _refuse_pickle(pickles[0])
    raise ValueError(f"{folder}: no weights found (expected {_SINGLE} or {_INDEX}).")


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; an error naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_headers(files) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """name -> (file, shape), from the safetensors headers only; a file that is not safetensors
    or is cut short (its header promises more bytes than it has) is an error naming it."""
    from safetensors import SafetensorError, safe_open

    paths = sorted(set(files.values())) if isinstance(files, dict) else files
    found: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for fpath in paths:
        try:
            with safe_open(str(fpath), framework="np") as fh:
                for name in fh.keys():
                    if isinstance(files, dict) and files.get(name, fpath) != fpath:
                        continue  # the index assigns this tensor to another shard
                    found[name] = (fpath, tuple(fh.get_slice(name).get_shape()))
        except SafetensorError as e:
            raise ValueError(f"{fpath}: not a readable safetensors file ({e}); is it truncated?") from None
    return found


def load_pretrained(path, *, dtype=jnp.float32, param_dtype=jnp.float32, strict: bool = True,
                    lm_head: bool = True) -> LanguageModel:
    """Load a local Hugging Face–format checkpoint folder as a :class:`LanguageModel`.

    Args:
      path: folder with ``config.json``, ``model.safetensors`` (or ``model.safetensors.index.json``
        and its shards) and optionally ``tokenizer.json``.
      dtype: compute dtype; param_dtype: dtype the weights are cast to (float32 default).
      strict: raise on tensors in the checkpoint that the model does not use (known buffers
        such as GPT-2's ``attn.bias`` masks are always ignored); ``False`` only warns.
      lm_head: ``False`` loads the body only (a reward model's checkpoint: its ``score.*`` head
        is read by :mod:`ppl_models.rewards.checkpoint`, and it has no LM head).

    Raises:
      ValueError: unsupported ``model_type`` or config field, a pickle checkpoint, a missing
        tensor or a tensor of the wrong shape (naming the tensor, expected and found shapes).
    """
    folder = Path(os.fspath(path))
    if folder.is_file():
        if folder.suffix in PICKLE_SUFFIXES:
            _refuse_pickle(folder)
        raise ValueError(f"load_pretrained expects a checkpoint folder, got the file {folder}.")
    if not folder.is_dir():
        raise FileNotFoundError(f"load_pretrained: no such folder {folder}.")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{folder}: missing config.json.")
    hf = _read_json(cfg_path)
    gen_path = folder / "generation_config.json"
    if gen_path.is_file():  # generation stops at its eos ids too (as transformers' generate does)
        gen_eos = _read_json(gen_path).get("eos_token_id")
        gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        own = hf.get("eos_token_id")
        own = [own] if isinstance(own, int) else list(own or [])
        if gen_eos and not own:
            raise ValueError(f"{gen_path}: eos_token_id {gen_eos} but config.json has none")
        hf = {**hf, "eos_token_id": list(dict.fromkeys(own + gen_eos))}
    config = LMConfig.from_hf(hf)
    if not lm_head:
        config = dataclasses.replace(config, tie_word_embeddings=True)

    files = _weight_files(folder)
    found = _read_headers(files)
    entries = hf_tensor_map(config)
    prefix = ""
    if config.model_type == "gpt2" and any(n.startswith("transformer.") for n in found):
        prefix = "transformer."

    def file_name(entry):
        return entry.name if entry.name == "lm_head.weight" else prefix + entry.name

    problems = []
    for e in entries:
        name = file_name(e)
        if name not in found:
            problems.append(f"missing tensor {name!r} (expected shape {e.shape})")
        elif found[name][1] != e.shape:
            problems.append(f"tensor {name!r} has shape {found[name][1]}, expected {e.shape}")
    if problems:
        raise ValueError(f"{folder}: checkpoint does not match config.json: " + "; ".join(problems))
    used = {file_name(e) for e in entries}
    extra = sorted(n for n in found if n not in used and not _ignorable(n, config)
                   and (lm_head or not n.startswith(("score.", "lm_head."))))
    if extra:
        msg = (f"{folder}: {len(extra)} tensor(s) in the checkpoint are not used by a {config.model_type} "
               f"model with this config.json: {extra[:8]}{' ...' if len(extra) > 8 else ''}")
        if strict:
            raise ValueError(msg + " (pass strict=False to ignore them)")
        warnings.warn(msg, stacklevel=2)

    module = nnx.eval_shape(lambda: Transformer(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    from safetensors import safe_open

    by_file: dict[Path, list[TensorEntry]] = {}
    for e in entries:
        by_file.setdefault(found[file_name(e)][0], []).append(e)
    for fpath, group in by_file.items():
        with safe_open(str(fpath), framework="np") as fh:
            for e in group:
                arr = fh.get_tensor(file_name(e))
                for target, value in zip(e.targets, _to_ours(arr, e)):
                    _variable(module, target).set_value(jnp.asarray(value, dtype=param_dtype))

    tokenizer = None
    tok_path = folder / "tokenizer.json"
    if tok_path.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tok_path))
    return LanguageModel(module, tokenizer=tokenizer)


def _to_ours(arr: np.ndarray, e: TensorEntry) -> list[np.ndarray]:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "f" and arr.dtype.name != "bfloat16":
        raise ValueError(f"tensor {e.name!r} has dtype {arr.dtype}, expected a floating-point type.")
    arr = arr.astype(np.float32)
    if e.kind == "T":
        return [arr.T]
    if e.kind == "qkv":
        return np.split(arr, 3, axis=-1)
    if e.kind == "T_rows":
        return [part.T for part in np.split(arr, np.cumsum(e.sizes)[:-1], axis=0)]
    return [arr]


def _from_ours(values: list[np.ndarray], e: TensorEntry) -> np.ndarray:
    if e.kind == "T":
        return values[0].T
    if e.kind == "qkv":
        return np.concatenate(values, axis=-1)
    if e.kind == "T_rows":
        return np.concatenate([v.T for v in values], axis=0)
    return values[0]


# ---------------------------------------------------------------------- saving
def save_pretrained(lm: LanguageModel, path, *, max_shard_size: int | None = None) -> Path:
    """Write ``lm`` as a Hugging Face–format folder (loadable by :func:`load_pretrained` and by
    ``transformers``' ``AutoModelForCausalLM.from_pretrained``).

    Writes ``config.json``, ``model.safetensors`` (float32, HF tensor names; GPT-2 names with the
    ``transformer.`` prefix of ``GPT2LMHeadModel``) and ``tokenizer.json`` if ``lm.tokenizer`` is
    set. With ``max_shard_size`` (bytes), tensors are split into shards
    ``model-0000i-of-0000n.safetensors`` listed in ``model.safetensors.index.json``.
    """
    from safetensors.numpy import save_file

    config = lm.config
    entries = hf_tensor_map(config)
    module = lm.module()
    prefix = "transformer." if config.model_type == "gpt2" else ""
    tensors = {}
    for e in entries:
        values = [np.asarray(_variable(module, t).get_value(), dtype=np.float32) for t in e.targets]
        name = e.name if e.name == "lm_head.weight" else prefix + e.name
        tensors[name] = np.ascontiguousarray(_from_ours(values, e))

    folder = Path(os.fspath(path))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "config.json", "w") as fh:
        json.dump(config.to_hf(), fh, indent=2)
    meta = {"format": "pt"}
    if max_shard_size is None:
        save_file(tensors, str(folder / _SINGLE), metadata=meta)
    else:
        shards, cur, size = [], {}, 0
        for name, arr in tensors.items():
            if cur and size + arr.nbytes > max_shard_size:
                shards.append(cur)
                cur, size = {}, 0
            cur[name] = arr
            size += arr.nbytes
        shards.append(cur)
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / fname), metadata=meta)
            weight_map.update({n: fname for n in shard})
        index = {"metadata": {"total_size": int(sum(a.nbytes for a in tensors.values()))}, "weight_map": weight_map}
        with open(folder / _INDEX, "w") as fh:
            json.dump(index, fh, indent=2)
    if lm.tokenizer is not None:
        lm.tokenizer.save(str(folder / "tokenizer.json"))
    return folder
