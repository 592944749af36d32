"""A character-level tokenizer for the bundled tasks, built with the ``tokenizers`` library.

Every character is one token (a ``WordLevel`` model over single characters, with a pre-tokenizer
that isolates each character and a ``Fuse`` decoder that joins them back without spaces). The
special tokens are ``<pad>`` (id 0), ``<eos>`` (id 1) and ``<unk>`` (id 2); the newline, which
ends every reasoning step, is :data:`NEWLINE`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHARS", "SPECIAL_TOKENS", "PAD", "EOS", "UNK", "NEWLINE", "build_tokenizer", "load_tokenizer",
           "newline_id", "encode", "decode"]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)
NEWLINE = "\n"
#: The characters of the vocabulary, in id order after the special tokens.
CHARS = "0123456789+-*=: \nadmnorswe"


def build_tokenizer():
    """The character-level ``tokenizers.Tokenizer`` (vocabulary: special tokens, then :data:`CHARS`)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def load_tokenizer(path):
    """A tokenizer saved with ``tokenizer.save(path)`` (a ``tokenizer.json`` file or its folder)."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"load_tokenizer: no tokenizer file at {p}.")
    return Tokenizer.from_file(str(p))


def newline_id(tokenizer) -> int:
    """The id of the newline token (the step delimiter)."""
    i = tokenizer.token_to_id(NEWLINE)
    if i is None:
        raise ValueError("tokenizer: no newline token; it cannot delimit reasoning steps.")
    return int(i)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` (no special tokens added)."""
    return tokenizer.encode(text, add_special_tokens=False).ids


def decode(tokenizer, ids) -> str:
    """Text of ``ids``; special tokens (padding, end of sequence) are dropped."""
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)
