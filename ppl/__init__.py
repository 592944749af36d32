"""ppl: inference-time scaling of language models as probabilistic programming in JAX.

The engine: Feynman–Kac models (:class:`FeynmanKac`, :func:`from_step_program`), particle
filters (:func:`run_smc`), conditional SMC and particle Gibbs, tempered SMC and NUTS for static
numpyro models, and conversion of every result to ``arviz.InferenceData``.
"""

__version__ = "0.1.0"

from ppl.core import FeynmanKac, PointMass, ProgramState, SMCError, from_step_program
from ppl.smc import ParticleGibbsResult, SMCResult, conditional_smc, particle_gibbs, resampling, run_smc, trajectories, trajectory

__all__ = [
    "ParticleGibbsResult",
    "conditional_smc",
    "particle_gibbs",
    "FeynmanKac",
    "PointMass",
    "ProgramState",
    "SMCError",
    "SMCResult",
    "__version__",
    "from_step_program",
    "resampling",
    "run_smc",
    "trajectories",
    "trajectory",
]
