"""Weights shipped inside the package: the tiny LM and its process reward model.

:func:`load_lm` loads ``models/bundled/lm`` (Hugging Face–format ``config.json``,
``model.safetensors``, ``tokenizer.json``; see its ``MODEL_CARD.md``) — no training and no
network. :func:`load_prm` loads ``models/bundled/prm``. :func:`lm_card_metrics` and
:func:`prm_card_metrics` return the metrics measured when the weights were made.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["BUNDLED_DIR", "LM_DIR", "PRM_DIR", "load_lm", "lm_card_metrics", "load_prm", "prm_card_metrics"]

BUNDLED_DIR = Path(__file__).resolve().parent
LM_DIR = BUNDLED_DIR / "lm"
PRM_DIR = BUNDLED_DIR / "prm"


def load_lm(dtype=None):
    """The bundled tiny LM as a :class:`models.lm.LanguageModel` (with its tokenizer)."""
    from models.lm import load_pretrained

    if not (LM_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"load_lm: the bundled LM weights are missing from {LM_DIR}; reinstall the package or "
            "recreate them with `ppl train lm`.")
    kw = {} if dtype is None else {"dtype": dtype}
    return load_pretrained(LM_DIR, **kw)


def lm_card_metrics() -> dict:
    """The metrics of the bundled LM's model card (``lm/metrics.json``)."""
    with open(LM_DIR / "metrics.json") as fh:
        return json.load(fh)


def load_prm():
    """The bundled process reward model as a :class:`models.rewards.ProcessRewardModel`."""
    from models.rewards.prm import load_prm as _load

    if not (PRM_DIR / "prm.safetensors").is_file():
        raise FileNotFoundError(
            f"load_prm: the bundled PRM weights are missing from {PRM_DIR}; reinstall the package or "
            "recreate them with `ppl train prm`.")
    return _load(PRM_DIR, lm=load_lm())  # the PRM reads the bundled LM's token features


def prm_card_metrics() -> dict:
    """The metrics of the bundled PRM's model card (``prm/metrics.json``)."""
    with open(PRM_DIR / "metrics.json") as fh:
        return json.load(fh)
