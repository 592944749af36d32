"""Weights shipped inside the package: the tiny LM, a verifier LM and the process reward model.

:func:`load_lm` loads ``models/bundled/lm`` (Hugging Face–format ``config.json``,
``model.safetensors``, ``tokenizer.json``; see its ``MODEL_CARD.md``) — no training and no
network. :func:`load_verifier` loads ``models/bundled/verifier``, the same LM trained further
(it knows the arithmetic better than the generator); :func:`load_prm` loads
``models/bundled/prm``, which reads the verifier's token features. :func:`lm_card_metrics`,
:func:`verifier_card_metrics` and :func:`prm_card_metrics` return the metrics measured when the
weights were made.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["BUNDLED_DIR", "LM_DIR", "VERIFIER_DIR", "PRM_DIR", "load_lm", "lm_card_metrics", "load_verifier",
           "verifier_card_metrics", "load_prm", "prm_card_metrics"]

BUNDLED_DIR = Path(__file__).resolve().parent
LM_DIR = BUNDLED_DIR / "lm"
VERIFIER_DIR = BUNDLED_DIR / "verifier"
PRM_DIR = BUNDLED_DIR / "prm"


def _load_checkpoint(folder: Path, what: str, how: str, dtype=None):
    from models.lm import load_pretrained

    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{what}: the bundled weights are missing from {folder}; reinstall the package or "
            f"recreate them with `{how}`.")
    kw = {} if dtype is None else {"dtype": dtype}
    return load_pretrained(folder, **kw)


def load_lm(dtype=None):
    """The bundled tiny LM as a :class:`models.lm.LanguageModel` (with its tokenizer)."""
    return _load_checkpoint(LM_DIR, "load_lm", "ppl train lm", dtype)


def lm_card_metrics() -> dict:
    """The metrics of the bundled LM's model card (``lm/metrics.json``)."""
    with open(LM_DIR / "metrics.json") as fh:
        return json.load(fh)


def load_verifier(dtype=None):
    """The bundled verifier LM: the tiny LM trained 1000 steps further with an annealed rate
    (see ``verifier/MODEL_CARD.md``); the bundled PRM reads its token features."""
    return _load_checkpoint(VERIFIER_DIR, "load_verifier", "ppl train lm --init-from ...", dtype)


def verifier_card_metrics() -> dict:
    """The metrics of the verifier LM's model card (``verifier/metrics.json``)."""
    with open(VERIFIER_DIR / "metrics.json") as fh:
        return json.load(fh)


def load_prm():
    """The bundled process reward model as a :class:`models.rewards.ProcessRewardModel`."""
    from models.rewards.prm import load_prm as _load

    if not (PRM_DIR / "prm.safetensors").is_file():
        raise FileNotFoundError(
            f"load_prm: the bundled PRM weights are missing from {PRM_DIR}; reinstall the package or "
            "recreate them with `ppl train prm`.")
    return _load(PRM_DIR, lm=load_verifier())  # the PRM reads the verifier LM's token features


def prm_card_metrics() -> dict:
    """The metrics of the bundled PRM's model card (``prm/metrics.json``)."""
    with open(PRM_DIR / "metrics.json") as fh:
        return json.load(fh)
