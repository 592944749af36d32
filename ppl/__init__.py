"""ppl: inference-time scaling of language models as probabilistic programming in JAX.

The engine: Feynman–Kac models (:class:`FeynmanKac`, :func:`from_step_program`), particle
filters (:func:`run_smc`), conditional SMC and particle Gibbs, two-sided bounds on the log-evidence
(:func:`log_evidence_bounds`), tempered SMC and NUTS for static
numpyro models (:func:`infer`), and conversion of every result to ``arviz.InferenceData``
(:func:`to_arviz`).
"""

__version__ = "0.1.0"

from ppl.core.posterior import PosteriorResult
from ppl.core import FeynmanKac, PointMass, ProgramState, SMCError, from_step_program
from ppl import lm
from ppl.infer import infer
from ppl.mcmc import nuts
from ppl.smc import (
    LogEvidenceBounds,
    ParticleGibbsResult,
    SMCResult,
    conditional_smc,
    exact_references,
    log_evidence_bounds,
    particle_gibbs,
    resampling,
    run_smc,
    tempered_smc,
    trajectories,
    trajectory,
)
from ppl.analysis import to_arviz

__all__ = [
    "FeynmanKac",
    "LogEvidenceBounds",
    "ParticleGibbsResult",
    "PointMass",
    "PosteriorResult",
    "ProgramState",
    "SMCError",
    "SMCResult",
    "__version__",
    "conditional_smc",
    "exact_references",
    "from_step_program",
    "infer",
    "lm",
    "log_evidence_bounds",
    "nuts",
    "particle_gibbs",
    "resampling",
    "run_smc",
    "to_arviz",
    "tempered_smc",
    "trajectories",
    "trajectory",
]
