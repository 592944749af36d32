"""Reward models for LM programs: a learned process reward model (PRM) and an oracle PRM.

* :class:`~ppl_models.rewards.prm.ProcessRewardModel` — a small flax nnx transformer scoring every
  step-boundary prefix (its last-step score is the outcome reward); :func:`load_prm` /
  :func:`save_prm`; :meth:`~ppl_models.rewards.prm.ProcessRewardModel.step_potential` turns it into a
  :class:`ppl.lm.Potential`.
* :class:`~ppl_models.rewards.oracle.OraclePRM` — exact step checking from the task's checker.
* :class:`~ppl_models.rewards.noisy.NoisyReward` — any reward with deterministic logit noise (robustness
  studies).
* :func:`load_bundled_prm` — the PRM shipped in ``models/bundled/prm``.
"""

from .noisy import NoisyReward
from .oracle import OraclePRM
from .prm import PRMConfig, PRMNet, ProcessRewardModel, load_prm, random_prm, save_prm


def load_bundled_prm() -> ProcessRewardModel:
    """The bundled PRM (trained on rollouts of the bundled LM, reading the bundled verifier LM's
    token features); no training, no network."""
    from ppl_models.bundled import load_prm as _load

    return _load()


__all__ = ["NoisyReward", "OraclePRM", "PRMConfig", "PRMNet", "ProcessRewardModel", "load_prm", "random_prm", "save_prm",
           "load_bundled_prm"]
