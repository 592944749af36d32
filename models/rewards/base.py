"""What the reward models share: a prefix score as a potential of an LM program."""

from __future__ import annotations


class PrefixScore:
    """Mixin for a reward with ``log_prefix_score(state) -> log r`` of one particle's prefix."""

    def step_potential(self, kind: str = "prefix", max_steps: int | None = None):
        """A :class:`ppl.lm.Potential` of this reward's prefix score: ``"prefix"``, ``"twist"`` or
        ``"last"`` (:func:`ppl.lm.potentials.from_score`)."""
        from ppl.lm import potentials

        return potentials.from_score(self.log_prefix_score, kind, max_steps)
