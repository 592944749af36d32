r"""A learned process reward model (PRM): a small causal transformer scoring every prefix.

The network reads ``prompt + partial solution`` and outputs one logit per position; the score
of the prefix that ends at position :math:`i` is :math:`r_i = \sigma(\mathrm{logit}_i)`, read at
step boundaries (the newline that ends a step, or the end-of-sequence token that ends the
answer line). Because attention is causal, one forward pass scores every prefix of a solution.

It is trained (:mod:`ppl_models.train.prm`) with binary cross-entropy: the label of a prefix is its
exact step correctness from the task's checker (process supervision; or, with Monte Carlo
labels, the fraction of the LM's continuations from it that reach the right answer, an
estimate of :math:`V(x_{1:t}) = P(\text{correct} \mid x_{1:t})`), and the label at the
end-of-sequence token is the exact correctness of the finished solution, so the last-step
score doubles as an outcome reward model (ORM). With ``PRMConfig.lm_features`` the network also
reads a frozen *features LM*'s log-probability and entropy at every token; the bundled PRM
reads the bundled verifier LM, which knows the arithmetic better than the generator.

As potentials of an LM program (:meth:`ProcessRewardModel.step_potential`):

* ``"prefix"``: :math:`\log G_t = \log r(x_{1:t})` at every step (particle filtering à la Puri
  et al. 2025);
* ``"twist"``: :math:`\log G_t = \log r(x_{1:t}) - \log r(x_{1:t-1})` — intermediate targets
  :math:`p(x_{1:t})\,r(x_{1:t})`, final target :math:`p(x)\,r(x)`;
* ``"last"``: the outcome score only, when the particle finishes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ppl_models.lm import LMConfig
from ppl_models.lm.transformer import Block, Norm
from ppl_models.rewards.base import PrefixScore

__all__ = ["lm_identity", "PRMConfig", "PRMNet", "PRMState", "ProcessRewardModel", "random_prm", "save_prm", "load_prm",
           "lm_token_features", "NUM_LM_FEATURES"]


@dataclasses.dataclass(frozen=True)
class PRMConfig:
    """Architecture of the PRM network (a Llama-style causal transformer with a scalar head)."""

    vocab_size: int
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 192
    max_length: int = 256
    newline_token_id: int = 17
    eos_token_id: int = 1
    lm_features: bool = False

    def lm_config(self) -> LMConfig:
        return LMConfig.llama(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                              num_heads=self.num_heads, num_kv_heads=self.num_heads,
                              intermediate_size=self.intermediate_size, max_position_embeddings=self.max_length,
                              bos_token_id=None, eos_token_id=self.eos_token_id)

    @property
    def num_params(self) -> int:
        c = self.lm_config()
        n = c.num_params - c.vocab_size * c.hidden_size + c.hidden_size + 1  # scalar head instead of lm_head
        return n + (NUM_LM_FEATURES + 1) * c.hidden_size if self.lm_features else n


#: Per-position features read from the LM when ``PRMConfig.lm_features``: the log-probability
#: the LM gave the token at this position, and the entropy of that prediction.
NUM_LM_FEATURES = 2


def lm_token_features(lm, lm_params, tokens):
    """``f32[B, S, 2]``: ``log p_LM(token_t | tokens_<t)`` and the entropy of that prediction
    (zeros at ``t = 0``), from one full forward pass of the (frozen) LM."""
    b, s = tokens.shape
    pos = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    logits, _ = lm.apply(lm_params, tokens, pos, None)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    feats = _features(logp[:, :-1], tokens[:, 1:])
    feats = jnp.concatenate([jnp.zeros((b, 1, NUM_LM_FEATURES), jnp.float32), feats], axis=1)
    return jax.lax.stop_gradient(feats)


def _features(logp_before, tokens):
    """``[..., 2]``: the log-probability of each token under the prediction before it
    (``logp_before [..., V]``), and that prediction's entropy."""
    tok_lp = jnp.take_along_axis(logp_before, tokens[..., None], axis=-1)[..., 0]
    ent = -jnp.sum(jnp.exp(logp_before) * logp_before, axis=-1)
    return jnp.stack([tok_lp, ent], axis=-1)


class PRMState(NamedTuple):
    """What the PRM carries in one particle to score it incrementally
    (:meth:`ProcessRewardModel.extend`): positions ``< read`` of the prefix have been read.

    Attributes:
        cache: the PRM network's keys and values, ``[1, H, W, D_h]`` per layer (``W`` the width
            it reads, ``min(buffer, max_length)``).
        lm_cache: the features LM's cache (``()`` for a PRM without LM features).
        logp: ``f32[V]`` the features LM's log-probabilities at position ``read - 1`` (the
            prediction of the next token; ``f32[0]`` without LM features).
        logit: the PRM's logit of the prefix of length ``read``.
        read: ``int32``, the number of positions read.
    """

    cache: tuple
    lm_cache: Any
    logp: jax.Array
    logit: jax.Array
    read: jax.Array


class PRMNet(nnx.Module):
    """Embedding, causal pre-norm blocks (from :mod:`ppl_models.lm`), final RMSNorm, scalar head.

    With ``config.lm_features`` the input of each position also carries the LM's token features
    (:func:`lm_token_features`), projected to the model width and added to the embedding.
    """

    def __init__(self, config: PRMConfig, *, rngs: nnx.Rngs):
        c = config.lm_config()
        self.config = config
        self.embed = nnx.Embed(c.vocab_size, c.hidden_size, embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
        self.features = (nnx.Linear(NUM_LM_FEATURES, c.hidden_size, kernel_init=nnx.initializers.normal(0.1), rngs=rngs)
                         if config.lm_features else None)
        self.layers = nnx.List([Block(c, dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)
                                for _ in range(c.num_layers)])
        self.final_norm = Norm(c.hidden_size, "rmsnorm", c.norm_eps)
        self.head = nnx.Linear(c.hidden_size, 1, kernel_init=nnx.initializers.normal(0.02), rngs=rngs)

    def __call__(self, tokens, positions, features=None):
        """Logits ``f32[B, S]`` of the prefixes ending at each position of ``tokens: int[B, S]``."""
        return self.forward(tokens, positions, features, None)[0]

    def forward(self, tokens, positions, features=None, cache=None):
        """``(logits f32[B, S], cache)``: with a KV ``cache`` (one :class:`LayerCache` per layer) the
        tokens' keys and values are written at their positions and each position attends to every
        cached position before it (as :class:`ppl_models.lm.transformer.Transformer` does)."""
        h = self.embed(tokens)
        if self.features is not None:
            if features is None:
                raise ValueError("PRMNet: this PRM reads LM features; pass features=lm_token_features(...).")
            h = h + self.features(features)
        new_cache = []
        for i, block in enumerate(self.layers):
            h, layer = block(h, positions, None if cache is None else cache[i])
            new_cache.append(layer)
        logits = self.head(self.final_norm(h))[..., 0].astype(jnp.float32)
        return logits, (None if cache is None else tuple(new_cache))


class ProcessRewardModel(PrefixScore):
    """A PRM as data (``params``) plus pure functions, like :class:`ppl_models.lm.LanguageModel`.

    ``apply(params, tokens[B, S], positions[B, S]) -> logits[B, S]``; prefix scores are
    ``sigmoid(logits)`` at step boundaries.
    """

    #: Tokens the incremental path feeds per forward pass (:meth:`extend`).
    chunk_size = 8

    def __init__(self, module: PRMNet, tokenizer=None, lm=None):
        self.config: PRMConfig = module.config
        self.graphdef, self.params = nnx.split(module)
        self.tokenizer = tokenizer
        if self.config.lm_features and lm is None:
            raise ValueError("ProcessRewardModel: this PRM reads the LM's token features; pass lm=... "
                             "(the features LM it was trained with; for the bundled PRM ppl_models.bundled.load_verifier()).")
        self.lm = lm
        graphdef = self.graphdef
        use_lm = self.config.lm_features

        def apply(params, tokens, positions):
            feats = lm_token_features(lm, lm.params, tokens) if use_lm else None
            return nnx.merge(graphdef, params)(tokens, positions, feats)

        self.apply = apply
        self._jit_logits = jax.jit(lambda params, tokens: apply(
            params, tokens, jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)))

    def with_params(self, params) -> "ProcessRewardModel":
        return ProcessRewardModel(nnx.merge(self.graphdef, params), tokenizer=self.tokenizer, lm=self.lm)

    # ----------------------------------------------------------------- host-side scoring
    def _encode(self, text: str) -> list[int]:
        from ppl_models.tasks.tokenizer import encode

        if self.tokenizer is None:
            raise ValueError("ProcessRewardModel: no tokenizer; pass token ids instead of text.")
        return encode(self.tokenizer, text)

    def step_scores(self, prompts, solutions, finished=None) -> list[np.ndarray]:
        """Scores in ``(0, 1)`` of every step-boundary prefix of each ``prompt + solution`` text.

        The boundaries are the newlines of the solution and, if the solution is ``finished``
        (default: it contains an ``answer:`` line), its end (the end-of-sequence token); the
        last entry is then the outcome score.
        """
        if isinstance(prompts, str):
            prompts, solutions = [prompts], [solutions]
        rows, bounds = [], []
        nl, eos = self.config.newline_token_id, self.config.eos_token_id
        for i, (p, s) in enumerate(zip(prompts, solutions)):
            ip, isol = self._encode(p), self._encode(s)
            fin = ("answer:" in s) if finished is None else bool(finished[i] if not isinstance(finished, bool) else finished)
            ids = ip + isol + ([eos] if fin else [])
            ids = ids[: self.config.max_length]
            b = [j for j in range(len(ip), len(ids)) if ids[j] == nl or (fin and j == len(ids) - 1 and ids[j] == eos)]
            rows.append(ids)
            bounds.append(b)
        width = -(-max(len(r) for r in rows) // 16) * 16
        tokens = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            tokens[i, :len(r)] = r
        logits = np.asarray(self._jit_logits(self.params, jnp.asarray(tokens)))
        return [1.0 / (1.0 + np.exp(-logits[i, b])) for i, b in enumerate(bounds)]

    def final_score(self, prompts, solutions) -> np.ndarray:
        """The outcome score (last step-boundary score) of each finished solution (``nan`` if none)."""
        scores = self.step_scores(prompts, solutions, finished=True)
        return np.array([s[-1] if len(s) else np.nan for s in scores])

    # ----------------------------------------------------------------- in-program scoring
    # The reward protocol of ppl.scaling: params (traced data), log_score(params, state),
    # static_key() and flops_per_token.
    def static_key(self):
        """What compiled programs that use this PRM depend on besides ``params`` (the PRM itself)."""
        return ("ProcessRewardModel", id(self))

    @property
    def flops_per_token(self) -> float:
        """Forward FLOPs per token read: :math:`2P` of the PRM, plus :math:`2P` of the features
        LM it reads."""
        from ppl.lm.compute import flops_per_token, num_params

        own = 2.0 * num_params(self.params)
        return own + (flops_per_token(self.lm) if self.config.lm_features else 0.0)

    def log_score(self, params, state) -> jax.Array:
        """``log r`` of one particle's prefix (an :class:`ppl.lm.LMState`), read at its last token,
        with the PRM weights ``params`` (traced)."""
        tokens = state.tokens
        length = tokens.shape[0]
        width = min(length, self.config.max_length)
        pos = jnp.arange(width, dtype=jnp.int32)
        logits = self.apply(params, tokens[None, :width], pos[None])[0]
        last = jnp.clip(state.length - 1, 0, width - 1)
        return jax.nn.log_sigmoid(logits[last])

    # Incremental scoring (ppl.core.protocols.IncrementalReward): the particle carries a PRMState.
    def init_state(self, params, prompt_state):
        """``(PRMState, tokens read)`` after reading the prompt of ``prompt_state`` (one particle)."""
        from ppl_models.lm.cache import init_cache

        c = self.config.lm_config()
        width = min(prompt_state.tokens.shape[0], self.config.max_length)
        cache = init_cache(c.num_layers, 1, c.num_kv_heads, width, c.head_dim, jnp.float32)
        if self.config.lm_features:
            lm_cache, logp = self.lm.init_cache(1, width), jnp.zeros((self.lm.vocab_size,), jnp.float32)
        else:
            lm_cache, logp = (), jnp.zeros((0,), jnp.float32)
        empty = PRMState(cache, lm_cache, logp, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        return self._read(params, empty, prompt_state)

    def extend(self, params, rstate: PRMState, state):
        """``(log r, PRMState, tokens read)``: the prefix of ``state`` scored after reading only the
        tokens past ``rstate.read``, in chunks of :attr:`chunk_size` through the PRM's and the
        features LM's KV caches. Equals :meth:`log_score` to float tolerance."""
        new, read = self._read(params, rstate, state)
        return jax.nn.log_sigmoid(new.logit), new, read

    def _read(self, params, rstate: PRMState, state):
        width = rstate.cache[0].k.shape[2]
        size, use_lm = int(self.chunk_size), self.config.lm_features
        net = nnx.merge(self.graphdef, params)
        stop = jnp.minimum(state.length, width).astype(jnp.int32)

        def chunk(r: PRMState) -> PRMState:
            pos = r.read + jnp.arange(size, dtype=jnp.int32)
            toks = state.tokens[jnp.clip(pos, 0, state.tokens.shape[0] - 1)]
            n = jnp.clip(stop - r.read, 0, size)  # valid positions in this chunk
            last = jnp.maximum(n - 1, 0)
            feats, lm_cache, logp = None, r.lm_cache, r.logp
            if use_lm:
                lm_logits, lm_cache = self.lm.apply(self.lm.params, toks[None], pos[None], r.lm_cache)
                lp = jax.nn.log_softmax(lm_logits[0].astype(jnp.float32), axis=-1)  # [size, V]
                before = jnp.concatenate([r.logp[None], lp[:-1]], axis=0)
                feats = jnp.where((pos > 0)[:, None], _features(before, toks), 0.0)[None]
                feats = jax.lax.stop_gradient(feats)
                logp = lp[last]
            logits, cache = net.forward(toks[None], pos[None], feats, r.cache)
            return PRMState(cache, lm_cache, logp, logits[0, last], r.read + n)

        out = jax.lax.while_loop(lambda r: r.read < stop, chunk, rstate)
        fed = (-(-(stop - jnp.minimum(rstate.read, stop)) // size)) * size
        return out, fed.astype(jnp.int32)

    def log_prefix_score(self, state) -> jax.Array:
        """``log r`` of one particle's prefix (an :class:`ppl.lm.LMState`), read at its last token."""
        return self.log_score(self.params, state)


def random_prm(config: PRMConfig, seed: int = 0, tokenizer=None, lm=None) -> ProcessRewardModel:
    """A randomly initialized PRM (deterministic in ``seed``)."""
    return ProcessRewardModel(PRMNet(config, rngs=nnx.Rngs(seed)), tokenizer=tokenizer, lm=lm)


def _flat(params) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out[name] = np.asarray(leaf, np.float32)
    return out


def lm_identity(lm) -> dict:
    """What identifies an LM's weights: the SHA-256 of its parameters (every leaf's name, shape
    and float32 bytes, in tree order), its parameter count and vocabulary size."""
    import hashlib

    h = hashlib.sha256()
    count = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(lm.params)[0]:
        arr = np.asarray(leaf, np.float32)
        h.update(jax.tree_util.keystr(path).encode() + str(arr.shape).encode() + arr.tobytes())
        count += arr.size
    return {"sha256": h.hexdigest(), "num_params": int(count), "vocab_size": int(lm.vocab_size)}


def save_prm(prm: ProcessRewardModel, path) -> Path:
    """Write ``prm_config.json``, ``prm.safetensors``, ``tokenizer.json`` (if any) and, for a PRM
    that reads an LM's token features, ``features_lm.json``: that LM's :func:`lm_identity`."""
    from safetensors.numpy import save_file

    folder = Path(os.fspath(path))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "prm_config.json", "w") as fh:
        json.dump(dataclasses.asdict(prm.config), fh, indent=2)
    if prm.config.lm_features and prm.lm is not None:
        with open(folder / "features_lm.json", "w") as fh:
            json.dump(lm_identity(prm.lm), fh, indent=2)
    save_file(_flat(prm.params), str(folder / "prm.safetensors"))
    if prm.tokenizer is not None:
        prm.tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def load_prm(path, lm=None) -> ProcessRewardModel:
    """Load a folder written by :func:`save_prm`; checks every tensor's presence and shape.

    A PRM with ``lm_features`` needs its LM (``lm=``), and it must be the LM it was trained
    with: when the folder records that LM's identity (``features_lm.json``), another LM is an
    error (its features would give the PRM's weights meaningless inputs)."""
    from safetensors.numpy import load_file

    folder = Path(os.fspath(path))
    cfg_path = folder / "prm_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"load_prm: missing {cfg_path}.")
    with open(cfg_path) as fh:
        config = PRMConfig(**json.load(fh))
    ident_path = folder / "features_lm.json"
    if config.lm_features and lm is not None and ident_path.is_file():
        with open(ident_path) as fh:
            want = json.load(fh)
        got = lm_identity(lm)
        if got["sha256"] != want["sha256"]:
            raise ValueError(f"load_prm: {folder} reads the token features of the LM with weights sha256 "
                             f"{want['sha256'][:12]}… ({want['num_params']:,} parameters); the LM given has "
                             f"{got['sha256'][:12]}… ({got['num_params']:,}). Pass the LM it was trained with "
                             "(ppl scale --prm-features-lm, or the bundled verifier LM)")
    abstract = nnx.eval_shape(lambda: PRMNet(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    tensors = load_file(str(folder / "prm.safetensors"))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    values = []
    for path_, leaf in leaves:
        name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path_)
        if name not in tensors:
            raise ValueError(f"{folder}: missing tensor {name!r} (expected shape {tuple(leaf.shape)}).")
        if tuple(tensors[name].shape) != tuple(leaf.shape):
            raise ValueError(f"{folder}: tensor {name!r} has shape {tensors[name].shape}, expected {tuple(leaf.shape)}.")
        values.append(jnp.asarray(tensors[name]))
    params = jax.tree_util.tree_unflatten(treedef, values)
    tokenizer = None
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return ProcessRewardModel(nnx.merge(graphdef, params), tokenizer=tokenizer, lm=lm)
