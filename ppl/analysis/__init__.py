"""Analysis of results: conversion to ``arviz.InferenceData`` (one way: the engine's results
know nothing of ArviZ; :func:`to_arviz` converts any of them), and the two-component Weibull
mixture fit of RPC's reasoning pruning (:mod:`ppl.analysis.weibull`)."""

from ppl.analysis.arviz import (
    particle_gibbs_to_inference_data,
    posterior_to_inference_data,
    scaling_to_inference_data,
    smc_to_inference_data,
    to_arviz,
)

__all__ = [
    "particle_gibbs_to_inference_data",
    "posterior_to_inference_data",
    "scaling_to_inference_data",
    "smc_to_inference_data",
    "to_arviz",
]
