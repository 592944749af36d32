"""Sequential Monte Carlo: the kernel (init / step), resampling, the SMC loop, conditional SMC,
two-sided log-evidence bounds, tempering, sharding."""

from ppl.smc import base, bounds, kernels, resampling, sharding
from ppl.smc.base import SMCState, StepInfo
from ppl.smc.bounds import LogEvidenceBounds, exact_references, log_evidence_bounds
from ppl.smc.conditional import ParticleGibbsResult, conditional_smc, particle_gibbs
from ppl.smc.loop import SMCResult, genealogy, run_smc, trajectories, trajectory
from ppl.smc.tempering import tempered_smc

__all__ = [
    "LogEvidenceBounds",
    "ParticleGibbsResult",
    "SMCResult",
    "SMCState",
    "StepInfo",
    "base",
    "bounds",
    "conditional_smc",
    "exact_references",
    "genealogy",
    "kernels",
    "log_evidence_bounds",
    "particle_gibbs",
    "resampling",
    "run_smc",
    "sharding",
    "tempered_smc",
    "trajectories",
    "trajectory",
]
