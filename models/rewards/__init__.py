"""Reward models for LM programs: a learned process reward model (PRM) and an oracle PRM.

* :class:`~ppl_models.rewards.prm.ProcessRewardModel` — a small flax nnx transformer scoring every
  step-boundary prefix (its last-step score is the outcome reward); :func:`load_prm` /
  :func:`save_prm`; :meth:`~ppl_models.rewards.prm.ProcessRewardModel.step_potential` turns it into a
  :class:`ppl.lm.Potential`.
* :class:`~ppl_models.rewards.oracle.OraclePRM` — exact step checking from the task's checker.
* :class:`~ppl_models.rewards.noisy.NoisyReward` — any reward with deterministic logit noise (robustness
  studies).
"""

from .noisy import NoisyReward
from .oracle import OraclePRM
from .prm import PRMConfig, PRMNet, ProcessRewardModel, load_prm, random_prm, save_prm


__all__ = ["NoisyReward", "OraclePRM", "PRMConfig", "PRMNet", "ProcessRewardModel", "load_prm", "random_prm",
           "save_prm"]
