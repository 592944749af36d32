"""Sequential Monte Carlo: resampling, the SMC loop, conditional SMC, tempering."""

from ppl.smc import resampling
from ppl.smc.conditional import ParticleGibbsResult, conditional_smc, particle_gibbs
from ppl.smc.loop import SMCResult, genealogy, run_smc, trajectories, trajectory

__all__ = [
    "ParticleGibbsResult",
    "conditional_smc",
    "particle_gibbs","SMCResult", "genealogy", "resampling", "run_smc", "trajectories", "trajectory"]
