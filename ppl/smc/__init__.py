"""Sequential Monte Carlo: the kernel (init / step), resampling, the SMC loop, conditional SMC,
tempering, sharding."""

from ppl.smc import base, kernels, resampling, sharding
from ppl.smc.base import SMCState, StepInfo
from ppl.smc.conditional import ParticleGibbsResult, conditional_smc, particle_gibbs
from ppl.smc.loop import SMCResult, genealogy, run_smc, trajectories, trajectory
from ppl.smc.tempering import tempered_smc

__all__ = [
    "ParticleGibbsResult",
    "SMCResult",
    "SMCState",
    "StepInfo",
    "base",
    "conditional_smc",
    "genealogy",
    "kernels",
    "particle_gibbs",
    "resampling",
    "run_smc",
    "sharding",
    "tempered_smc",
    "trajectories",
    "trajectory",
]
