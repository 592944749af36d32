"""Tiny random Hugging Face checkpoints (for the tests and `examples/own_model.py`): a Qwen2 LM with a byte-level BPE
tokenizer (with Qwen's ``<extra_0>`` step separator) and a ChatML chat template, a Qwen2 PRM with a classification head, and a 4-problem
MATH-style JSON-lines file."""

import json

import numpy as np

from ppl_models.lm import LMConfig, random_lm, save_pretrained

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PROBLEMS = [
    {"problem": "What is $1 + 2$?", "solution": "We add.\n\nSo $1 + 2 = \\boxed{3}$.", "answer": "3"},
    {"problem": "What is half of $1$?", "solution": "Half is $\\frac{1}{2}$.\n\nThe answer is $\\boxed{\\frac{1}{2}}$."},
    {"problem": "Solve $x + 1 = 5$.", "solution": "Subtract 1.\n\nSo $x = \\boxed{4}$.", "answer": "4"},
    {"problem": "What is $2 \\cdot 3$?", "solution": "Multiply.\n\nThe product is $\\boxed{6}$.", "answer": "6"},
]


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [json.dumps(p) for p in PROBLEMS] + [p["solution"] for p in PROBLEMS] * 20 + ["step one\n\nstep two\n\n"] * 50
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return tok


def write(tmp_path):
    """``(lm_dir, prm_dir, data_file)``."""
    tok = tokenizer()
    vocab = -(-tok.get_vocab_size() // 8) * 8
    eos = tok.token_to_id("<|im_end|>")
    base = dict(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                max_position_embeddings=512, bos_token_id=None, eos_token_id=eos)
    lm_dir, prm_dir = tmp_path / "lm", tmp_path / "prm"
    lm = random_lm(LMConfig.qwen2(**base, tie_word_embeddings=True), seed=1, tokenizer=tok)
    save_pretrained(lm, lm_dir)
    (lm_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML, "eos_token": "<|im_end|>"}))
    prm = random_lm(LMConfig.qwen2(**base, tie_word_embeddings=True), seed=2, tokenizer=tok)
    save_pretrained(prm, prm_dir)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(prm_dir / "model.safetensors"))
    rng = np.random.default_rng(0)
    tensors.update({"score.0.weight": rng.normal(0, 0.2, (32, 32)).astype(np.float32),
                    "score.0.bias": np.zeros(32, np.float32),
                    "score.2.weight": rng.normal(0, 0.2, (2, 32)).astype(np.float32),
                    "score.2.bias": np.zeros(2, np.float32)})
    save_file(tensors, str(prm_dir / "model.safetensors"), metadata={"format": "pt"})
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return lm_dir, prm_dir, data
