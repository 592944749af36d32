"""Errors raised by the engine."""

from __future__ import annotations

from typing import Optional

__all__ = ["SMCError"]


class SMCError(RuntimeError):
    """A numerical failure inside an SMC run: all weights zero, or a NaN potential.

    ``step`` is the time step at which it happened.
    """

    def __init__(self, message: str, step: Optional[int] = None):
        super().__init__(message)
        self.step = step
