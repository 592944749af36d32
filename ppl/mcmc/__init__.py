"""MCMC for static models: NUTS through numpyro (:func:`ppl.mcmc.nuts.nuts`)."""

from ppl.mcmc.nuts import nuts

__all__ = ["nuts"]
