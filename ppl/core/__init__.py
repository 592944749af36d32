"""Programs and models: Feynman–Kac models and numpyro step programs."""

from ppl.core.errors import SMCError
from ppl.core.feynman_kac import FeynmanKac, PointMass
from ppl.core.step_program import ProgramState, from_step_program

__all__ = ["FeynmanKac", "PointMass", "ProgramState", "SMCError", "from_step_program"]
