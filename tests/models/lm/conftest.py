"""Tiny configs of each family, shared by the LM tests."""

import pytest

from ppl_models.lm import LMConfig

TINY = dict(vocab_size=29, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
            max_position_embeddings=32)


def tiny_config(family: str) -> LMConfig:
    if family == "gpt2":
        return LMConfig.gpt2(**TINY, bos_token_id=0, eos_token_id=1)
    if family == "llama":  # grouped-query attention, head_dim != hidden / heads, untied head
        return LMConfig.llama(**TINY, num_kv_heads=2, head_dim=16, bos_token_id=0, eos_token_id=1)
    if family == "qwen2":  # q/k/v biases, tied head
        return LMConfig.qwen2(**TINY, num_kv_heads=2, tie_word_embeddings=True, eos_token_id=1)
    if family == "llama3":  # Llama 3.1 RoPE scaling, with frequencies in all three bands (theta 500,
        # head_dim 16: wavelengths 6.3 ... 2,800 against 64/4 = 16 and 64/1 = 64)
        return LMConfig.llama(**TINY, num_kv_heads=2, head_dim=16, rope_theta=500.0,
                              rope_scaling=("llama3", 8.0, 1.0, 4.0, 64), bos_token_id=0, eos_token_id=1)
    if family == "qwen3":  # q/k norms, GQA, head_dim != hidden / heads
        return LMConfig.llama(**TINY, num_kv_heads=2, head_dim=16, qk_norm=True, model_type="qwen3",
                              bos_token_id=0, eos_token_id=1)
    if family == "mistral":  # sliding-window attention (window 4 < the test sequences' 7-9 tokens)
        return LMConfig.llama(**TINY, num_kv_heads=2, sliding_window=4, model_type="mistral",
                              bos_token_id=0, eos_token_id=1)
    if family == "phi3":  # fused qkv and gate/up projections, GQA
        return LMConfig.llama(**TINY, num_kv_heads=2, model_type="phi3", bos_token_id=0, eos_token_id=1)
    if family == "gemma2":  # sandwich norms scaled by 1 + w, sqrt(D) embeddings, local layer 0 (window 4),
        # soft-capped attention and logits (caps small enough to bite), query_pre_attn_scalar, tied head
        return LMConfig.llama(**TINY, num_kv_heads=2, head_dim=16, model_type="gemma2", norm="rmsnorm_offset",
                              activation="gelu_new", embed_scale=True, sandwich_norms=True, sliding_window=4,
                              local_layers=(0,), query_pre_attn_scalar=24.0, attn_logit_softcap=2.0,
                              final_logit_softcap=3.0, tie_word_embeddings=True, bos_token_id=0, eos_token_id=1)
    raise ValueError(family)


FAMILIES = ("gpt2", "llama", "qwen2")


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param
