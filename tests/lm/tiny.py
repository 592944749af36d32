"""A tiny LM that follows ppl's LM protocol, for exact tests (independent of models/lm).

Vocabulary of 5 tokens (0 = end of sequence). The logits for the token after position p are

    emb[tok_p] + pos[p] + (mean over j <= p of onehot(tok_j)) @ ctx,

so they depend on the whole prefix, which the "KV cache" (the token history) must supply: it is
read for positions <= p only, as the protocol requires.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class TinyLM:
    vocab_size = 5
    eos_token_id = 0
    tokenizer = None

    def __init__(self, seed: int = 0, max_positions: int = 32, scale: float = 1.5):
        rng = np.random.default_rng(seed)
        v = self.vocab_size
        self.params = {
            "emb": jnp.asarray(scale * rng.normal(size=(v, v)), jnp.float32),
            "pos": jnp.asarray(0.5 * rng.normal(size=(max_positions, v)), jnp.float32),
            "ctx": jnp.asarray(scale * rng.normal(size=(v, v)), jnp.float32),
        }
        self.max_positions = max_positions

    def init_cache(self, batch_size, max_length):
        return {"tok": jnp.zeros((batch_size, max_length), jnp.int32)}

    def apply(self, params, tokens, positions, cache):
        hist = cache["tok"]
        b, s = tokens.shape
        rows = jnp.arange(b)[:, None]
        hist = hist.at[rows, positions].set(tokens)
        L = hist.shape[1]
        onehot = jax.nn.one_hot(hist, self.vocab_size)  # [B, L, V]
        mask = (jnp.arange(L)[None, None, :] <= positions[:, :, None]).astype(jnp.float32)  # [B, S, L]
        mean = jnp.einsum("bsl,blv->bsv", mask, onehot) / (positions[:, :, None] + 1.0)
        logits = params["emb"][tokens] + params["pos"][positions] + mean @ params["ctx"]
        return logits, {"tok": hist}

    def apply_with_prefix(self, params, tokens, positions, prefix, cache):
        """``apply`` reading a history prefix shared by all rows (positions ``0..F-1``, batch one);
        each row's own history holds positions ``F..``."""
        f = prefix["tok"].shape[1]
        b = cache["tok"].shape[0]
        hist = jnp.concatenate([jnp.broadcast_to(prefix["tok"], (b, f)), cache["tok"]], axis=1)
        logits, full = self.apply(params, tokens, positions, {"tok": hist})
        return logits, {"tok": full["tok"][:, f:]}

    def log_prob_sequence(self, prompt, generated):
        """log p(generated | prompt) by one full forward pass (numpy float64 sum)."""
        seq = np.concatenate([prompt, generated]).astype(np.int32)
        logits, _ = self.apply(self.params, jnp.asarray(seq[None, :-1]),
                               jnp.arange(len(seq) - 1, dtype=jnp.int32)[None],
                               self.init_cache(1, len(seq)))
        lp = np.asarray(jax.nn.log_softmax(logits[0], -1), np.float64)
        p = len(prompt)
        return float(sum(lp[p - 1 + i, tok] for i, tok in enumerate(generated)))


def step_bounds(gen, *, prompt_length: int, max_length: int, max_steps: int, max_step_tokens: int, delimiter: int,
                eos: int):
    """Step end offsets of a generation, or None if the sampler would not stop exactly at its end
    (the stopping rules of ppl.lm.sampling.sample_step, restated)."""
    steps, n_in_step, length, bounds = 0, 0, prompt_length, []
    for i, tok in enumerate(gen):
        n_in_step += 1
        length += 1
        done = tok == eos or length >= max_length
        if done or n_in_step >= max_step_tokens or tok == delimiter:
            steps += 1
            bounds.append(i + 1)
            n_in_step = 0
            if done or steps == max_steps:
                return bounds if i == len(gen) - 1 else None
    return None

