"""Reward models from Hugging Face checkpoints against PyTorch (skipped without torch/transformers),
and their incremental path against the full re-read."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ppl  # noqa: E402
from ppl_models.lm import random_lm  # noqa: E402
from ppl_models.rewards.checkpoint import load_reward  # noqa: E402

V, B, S = 29, 3, 9
KW = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
          max_position_embeddings=64, vocab_size=V, bos_token_id=0, eos_token_id=1)


def _randomize(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model.eval()


def _tokens():
    return np.random.default_rng(1).integers(2, V - 1, (B, S)).astype(np.int32)


def test_outcome_reward_matches_sequence_classification(tmp_path):
    model = _randomize(transformers.LlamaForSequenceClassification(
        transformers.LlamaConfig(num_labels=1, pad_token_id=V - 1, **KW)))
    model.save_pretrained(tmp_path)
    reward = load_reward(tmp_path, "outcome")
    tokens = _tokens()
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.as_tensor(tokens, dtype=torch.long)).logits[:, 0]).numpy()
    np.testing.assert_allclose(reward.scores(tokens)[:, -1], ref, atol=1e-5)


class _PRM(torch.nn.Module):
    """Qwen2.5-Math-PRM's layout: a Qwen2 body and a two-layer score head."""

    def __init__(self, cfg):
        super().__init__()
        self.model = transformers.Qwen2Model(cfg)
        d = cfg.hidden_size
        self.score = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, 2))

    def forward(self, tokens):
        return self.score(self.model(tokens).last_hidden_state)


def test_classifier_prm_matches_a_torch_module_on_qwen2(tmp_path):
    from safetensors.torch import save_file

    cfg = transformers.Qwen2Config(**KW)
    model = _randomize(_PRM(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_dict(), "architectures": ["Qwen2ForProcessRewardModel"]}))
    reward = load_reward(tmp_path, "classifier")
    tokens = _tokens()
    with torch.no_grad():
        ref = torch.softmax(model(torch.as_tensor(tokens, dtype=torch.long)), dim=-1)[..., 1].numpy()
    np.testing.assert_allclose(reward.scores(tokens), ref, atol=1e-5)
    # a head of the wrong shape is named
    from safetensors.numpy import load_file, save_file as save_np

    t = load_file(str(tmp_path / "model.safetensors"))
    t["score.2.weight"] = np.zeros((3, 32), np.float32)
    save_np(t, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="'score.2.weight' has shape"):
        load_reward(tmp_path, "classifier")


def test_classifier_prm_reads_each_step_at_its_separator(tmp_path):
    """Qwen2.5-Math-PRM's convention: every step followed by a separator (``<extra_0>``), read
    there. The policy's buffer ends a step with its delimiter (the last with end-of-sequence); with
    ``separator``/``step_ends`` the reward reads those as the separator, so its score at each
    step's end equals the torch module's at the separators of ``prompt step<sep> step<sep> ...``
    (full re-read and incremental); a delimiter inside the prompt is read as itself."""
    from safetensors.torch import save_file

    from ppl.lm import LMState

    cfg = transformers.Qwen2Config(**KW)
    model = _randomize(_PRM(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_dict(), "architectures": ["Qwen2ForProcessRewardModel"]}))
    SEP, DELIM, EOS = 27, 7, 1
    reward = load_reward(tmp_path, "classifier", separator=SEP, step_ends=(DELIM, EOS))
    plain = load_reward(tmp_path, "classifier")
    prompt, steps = [2, 3, DELIM, 4], [[5, 6, DELIM], [8, 9, 10, DELIM], [11, EOS]]
    gen = [t for step in steps for t in step]
    qwen = prompt + [SEP if t in (DELIM, EOS) else t for t in gen]
    with torch.no_grad():
        ref = torch.softmax(model(torch.as_tensor([qwen])), dim=-1)[0, :, 1].numpy()
    buf = np.zeros(24, np.int32)
    buf[:len(prompt) + len(gen)] = prompt + gen
    z = jnp.zeros((), jnp.float32)

    def state(length):
        return LMState(tokens=jnp.asarray(buf), length=jnp.asarray(length, jnp.int32), cache=(),
                       num_steps=jnp.asarray(0, jnp.int32), step_start=jnp.asarray(len(prompt), jnp.int32),
                       prompt_length=jnp.asarray(len(prompt), jnp.int32), done=jnp.asarray(False),
                       step_log_p=z, step_log_q=z)

    rstate, _ = reward.init_state(reward.params, state(len(prompt)))
    end = len(prompt)
    for step in steps:
        end += len(step)
        full = float(np.exp(reward.log_score(reward.params, state(end))))
        log_r, rstate, _ = reward.extend(reward.params, rstate, state(end))
        assert full == pytest.approx(ref[end - 1], abs=1e-5)
        assert float(np.exp(log_r)) == pytest.approx(ref[end - 1], abs=1e-5)
        # without the convention the head reads the delimiter / end-of-sequence token itself
        assert float(np.exp(plain.log_score(plain.params, state(end)))) != pytest.approx(ref[end - 1], abs=1e-3)
    with pytest.raises(ValueError, match="separator and step_ends"):
        load_reward(tmp_path, "classifier", separator=SEP)


def test_lm_judge_reads_good_against_bad(tmp_path):
    model = _randomize(transformers.LlamaForCausalLM(transformers.LlamaConfig(**KW)))
    model.save_pretrained(tmp_path)
    reward = load_reward(tmp_path, "lm-judge", good=5, bad=6)
    tokens = _tokens()
    with torch.no_grad():
        logits = model(torch.as_tensor(tokens, dtype=torch.long)).logits
    ref = torch.softmax(logits[..., [5, 6]], dim=-1)[..., 0].numpy()
    np.testing.assert_allclose(reward.scores(tokens), ref, atol=1e-5)
    with pytest.raises(ValueError, match="good"):
        load_reward(tmp_path, "lm-judge", bad=6)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        load_reward(tmp_path, "lm-judge", good=5, bad=99)


def test_incremental_scores_equal_the_full_re_read(tmp_path):
    """In a particle filter, the reward read incrementally (the body's KV cache, new tokens only)
    gives the same weights as re-reading every prefix."""
    model = _randomize(transformers.Qwen2ForSequenceClassification(
        transformers.Qwen2Config(num_labels=1, pad_token_id=V - 1, **KW)))
    model.save_pretrained(tmp_path)
    reward = load_reward(tmp_path, "outcome")
    lm = random_lm(ppl_models_tiny(), seed=3)
    program = ppl.lm.LMProgram(lm, np.array([2, 3, 4]), max_steps=4, step_delimiter=7, max_step_tokens=5)
    runs = []
    for incremental in (True, False):
        pot = ppl.lm.potentials.from_reward(reward, aggregate="last", weighting="ratio", incremental=incremental)
        res = ppl.run_smc(program.with_potential(pot, correct_proposal=False), 8, key=jax.random.key(0))
        runs.append((float(res.log_evidence), np.asarray(res.log_weights)))
    assert abs(runs[0][0] - runs[1][0]) < 1e-4
    np.testing.assert_allclose(runs[0][1], runs[1][1], atol=1e-4)


def ppl_models_tiny():
    from ppl_models.lm import LMConfig

    return LMConfig.llama(vocab_size=V, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=32,
                          max_position_embeddings=64, bos_token_id=0, eos_token_id=1)
