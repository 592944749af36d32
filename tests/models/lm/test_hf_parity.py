"""Logits parity with the PyTorch models of Hugging Face transformers (skipped without them).

Install with the ``hf`` extra: ``pip install -e .[hf]`` (torch==2.13.0, transformers 5).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ppl_models.lm import load_pretrained, random_lm, save_pretrained  # noqa: E402

from .conftest import tiny_config  # noqa: E402

B, S = 3, 9


def _hf_model(family):
    kw = dict(vocab_size=29, bos_token_id=0, eos_token_id=1)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=32, n_inner=48, **kw)
        cls = transformers.GPT2LMHeadModel
    elif family == "llama":  # GQA and head_dim != hidden / heads; untied head
        cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=16, intermediate_size=48,
                                       max_position_embeddings=32, rope_theta=500.0,
                                       tie_word_embeddings=False, **kw)
        cls = transformers.LlamaForCausalLM
    elif family == "llama3":  # Llama 3.1 RoPE scaling, frequencies in all three bands
        cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=16, intermediate_size=48,
                                       max_position_embeddings=32, tie_word_embeddings=False,
                                       rope_parameters={"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0,
                                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 64}, **kw)
        cls = transformers.LlamaForCausalLM
    elif family == "qwen3":  # q/k norms
        cfg = transformers.Qwen3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=16, intermediate_size=48,
                                       max_position_embeddings=32, tie_word_embeddings=False, **kw)
        cls = transformers.Qwen3ForCausalLM
    elif family == "mistral":  # sliding-window attention, window 4 < 9 tokens
        cfg = transformers.MistralConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=48, max_position_embeddings=32,
                                         sliding_window=4, tie_word_embeddings=False, **kw)
        cls = transformers.MistralForCausalLM
    elif family == "phi3":  # fused qkv_proj and gate_up_proj
        cfg = transformers.Phi3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=48, max_position_embeddings=32,
                                      original_max_position_embeddings=32, pad_token_id=2, **kw)
        cls = transformers.Phi3ForCausalLM
    elif family == "gemma2":  # see tests/models/lm/conftest.py
        cfg = transformers.Gemma2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        head_dim=16, intermediate_size=48, max_position_embeddings=32, sliding_window=4,
                                        query_pre_attn_scalar=24, attn_logit_softcapping=2.0,
                                        final_logit_softcapping=3.0, pad_token_id=None, **kw)
        cls = transformers.Gemma2ForCausalLM
    else:  # GQA, q/k/v bias, tied head
        cfg = transformers.Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=48,
                                       max_position_embeddings=32, tie_word_embeddings=True, **kw)
        cls = transformers.Qwen2ForCausalLM
    torch.manual_seed(0)
    model = cls(cfg).eval()
    with torch.no_grad():  # randomize everything (biases, norm scales) so any mis-mapping shows
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name or "ln_" in name and name.endswith("weight") else 0.0))
    return model


def _tokens():
    return np.random.default_rng(0).integers(0, 29, (B, S)).astype(np.int32)


def _ours(lm, tokens):
    pos = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
    return np.asarray(jax.jit(lm.apply)(lm.params, jnp.asarray(tokens), pos, None)[0])


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "llama3", "qwen3", "mistral", "phi3", "gemma2"])
def test_load_transformers_checkpoint(family, tmp_path):
    model = _hf_model(family)
    model.save_pretrained(tmp_path)
    lm = load_pretrained(tmp_path)
    tokens = _tokens()
    with torch.no_grad():
        ref = model(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(_ours(lm, tokens), ref, atol=1e-4, rtol=1e-4)
    # and with the KV cache: prefill 4 then decode one by one
    cache = lm.init_cache(B, 16)
    step = jax.jit(lm.apply)
    pos = np.broadcast_to(np.arange(S, dtype=np.int32), (B, S))
    out, cache = step(lm.params, jnp.asarray(tokens[:, :4]), jnp.asarray(pos[:, :4]), cache)
    outs = [np.asarray(out)]
    for t in range(4, S):
        out, cache = step(lm.params, jnp.asarray(tokens[:, t : t + 1]), jnp.asarray(pos[:, t : t + 1]), cache)
        outs.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(outs, 1), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "llama3", "qwen3", "mistral", "phi3", "gemma2"])
def test_save_pretrained_loads_in_transformers(family, tmp_path):
    lm = random_lm(tiny_config(family), seed=7, std=0.2)
    save_pretrained(lm, tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens = _tokens()
    with torch.no_grad():
        ref = model(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(_ours(lm, tokens), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["qwen2"] + [pytest.param(f, marks=pytest.mark.slow)
                                                for f in ("gpt2", "llama3", "mistral", "gemma2")])
def test_left_padded_batch_matches_transformers_attention_mask(family, tmp_path):
    """Prompts of lengths 9, 5 and 2 left-padded to one width: ``pad=`` (ours) against
    transformers' ``attention_mask`` and ``position_ids`` — full forward, then KV decode of two
    more tokens per row; logits compared at the real (unpadded) slots."""
    model = _hf_model(family)
    model.save_pretrained(tmp_path)
    lm = load_pretrained(tmp_path)
    tokens = _tokens()
    pad = np.array([0, 4, 7], np.int32)
    valid = np.arange(S)[None, :] >= pad[:, None]
    tokens = np.where(valid, tokens, 0).astype(np.int32)
    mask = valid.astype(np.int64)
    with torch.no_grad():
        ref = model(torch.as_tensor(tokens, dtype=torch.long), attention_mask=torch.as_tensor(mask),
                    position_ids=torch.as_tensor(np.maximum(np.cumsum(mask, 1) - 1, 0))).logits.numpy()
    slots = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
    ours = np.asarray(jax.jit(lm.apply)(lm.params, jnp.asarray(tokens), slots, None, pad=jnp.asarray(pad))[0])
    np.testing.assert_allclose(ours[valid], ref[valid], atol=1e-4, rtol=1e-4)
    # each row alone, unpadded, gives the same logits (the padding is invisible)
    for b in range(B):
        alone = np.asarray(lm.apply(lm.params, jnp.asarray(tokens[b:b + 1, pad[b]:]),
                                    jnp.arange(S - pad[b], dtype=jnp.int32)[None], None)[0])
        np.testing.assert_allclose(ours[b, pad[b]:], alone[0], atol=1e-4, rtol=1e-4)
    # KV cache: prefill the padded batch, then decode two tokens per row at slots S and S + 1
    extra = np.random.default_rng(1).integers(2, 29, (B, 2)).astype(np.int32)
    full = np.concatenate([tokens, extra], 1)
    full_mask = np.concatenate([mask, np.ones((B, 2), np.int64)], 1)
    with torch.no_grad():
        ref2 = model(torch.as_tensor(full, dtype=torch.long), attention_mask=torch.as_tensor(full_mask),
                     position_ids=torch.as_tensor(np.maximum(np.cumsum(full_mask, 1) - 1, 0))).logits.numpy()
    step = jax.jit(lm.apply)
    cache = lm.init_cache(B, 16)
    _, cache = step(lm.params, jnp.asarray(tokens), slots, cache, pad=jnp.asarray(pad))
    for t in range(2):
        at = jnp.full((B, 1), S + t, jnp.int32)
        out, cache = step(lm.params, jnp.asarray(extra[:, t:t + 1]), at, cache, pad=jnp.asarray(pad))
        np.testing.assert_allclose(np.asarray(out)[:, 0], ref2[:, S + t], atol=1e-4, rtol=1e-4)
