"""Analysis of results: result types and conversion to ``arviz.InferenceData``."""

from ppl.analysis.arviz import (
    particle_gibbs_to_inference_data,
    posterior_to_inference_data,
    smc_to_inference_data,
)
from ppl.analysis.results import PosteriorResult

__all__ = [
    "PosteriorResult",
    "particle_gibbs_to_inference_data",
    "posterior_to_inference_data",
    "smc_to_inference_data",
]
