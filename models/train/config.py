"""The hyper-parameters of ``ppl train lm``, ``ppl train prm`` and ``ppl train twist`` (a light module: ``ppl train
--help`` reads it)."""

from __future__ import annotations

import dataclasses
from typing import Optional

__all__ = ["Optimization", "AdamW", "TrainConfig", "SCHEDULES", "PRMTrainConfig", "STEP_LABELS", "TwistTrainConfig", "TWIST_INITS"]

#: Learning-rate schedules after the linear warm-up.
SCHEDULES = ("constant", "cosine")
#: How ``ppl train prm`` labels a prefix.
STEP_LABELS = ("monte-carlo", "exact")


def _at_least(cfg, **lows) -> None:
    """Each named field of ``cfg`` is at least its bound, else a ValueError naming the field."""
    for name, low in lows.items():
        if getattr(cfg, name) < low:
            raise ValueError(f"{name}: expected >= {low}, got {getattr(cfg, name)!r}")


@dataclasses.dataclass(frozen=True)
class Optimization:
    """What every ``ppl train`` run has: a seed, a number of optimizer steps and a peak learning
    rate (checked here, once, for every config). Each config states its own defaults."""

    seed: int = 0
    steps: int = 1000
    learning_rate: float = 1e-3

    def __post_init__(self):
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {self.steps!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: expected > 0, got {self.learning_rate!r}")


@dataclasses.dataclass(frozen=True)
class AdamW(Optimization):
    """:class:`Optimization` with AdamW's batches, linear warm-up and weight decay
    (``ppl_models.train.optim.warmup_adamw``)."""

    batch_size: int = 64
    warmup_steps: int = 100
    weight_decay: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        _at_least(self, batch_size=1, warmup_steps=0, weight_decay=0)


@dataclasses.dataclass(frozen=True)
class TrainConfig(AdamW):
    """Hyper-parameters of ``ppl train lm`` (the defaults reproduce the shipped model)."""

    steps: int = 3000
    learning_rate: float = 2e-3
    clip_norm: float = 1.0
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_steps_in_mixture: int = 7
    moduli: tuple = (23, 97)
    max_multiplier: int = 9
    #: ``"constant"`` after the warm-up (the bundled LM), or ``"cosine"``: decay to zero at the
    #: last step (the bundled verifier LM)
    schedule: str = "constant"
    #: an LM checkpoint folder to start from instead of random weights (its architecture and
    #: tokenizer are used; the architecture fields above are then ignored)
    init_from: Optional[str] = None
    #: index of the first training batch in the data stream: a continued run passes the number
    #: of steps already taken, so that it sees fresh problems
    first_step: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        _at_least(self, first_step=0)


@dataclasses.dataclass(frozen=True)
class PRMTrainConfig(AdamW):
    """Hyper-parameters of ``ppl train prm`` (the defaults reproduce the shipped PRM)."""

    steps: int = 800
    learning_rate: float = 1e-3
    problems_per_difficulty: int = 100
    difficulties: tuple = ((3, 23), (5, 23), (7, 23), (3, 97), (4, 97), (6, 97))
    num_rollouts: int = 4
    #: rollouts are drawn ``num_rollouts`` times per problem at each of these temperatures
    rollout_temperatures: tuple = (1.0, 0.8)
    num_continuations: int = 4
    init_from_lm: bool = False
    lm_features: bool = True
    #: ``"exact"``: 1 if every step so far is right (the checker); ``"monte-carlo"``: prefix
    #: labels = fraction of continuations that end right (the value of the prefix under the LM).
    step_labels: str = "exact"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 192

    def __post_init__(self):
        super().__post_init__()
        if self.step_labels not in STEP_LABELS:
            raise ValueError(f"step_labels: expected one of {STEP_LABELS}, got {self.step_labels!r}")
        temps = tuple(float(t) for t in self.rollout_temperatures)
        if not temps or not all(t > 0 for t in temps):
            raise ValueError(f"rollout_temperatures: expected one or more positive numbers, got {self.rollout_temperatures!r}")
        object.__setattr__(self, "rollout_temperatures", temps)


#: Where ``ppl train twist`` starts: the bundled PRM's weights, or a random head of its shape.
TWIST_INITS = ("prm", "random")


@dataclasses.dataclass(frozen=True)
class TwistTrainConfig(Optimization):
    """Hyper-parameters of ``ppl train twist`` (the defaults reproduce the shipped twist)."""

    steps: int = 300
    learning_rate: float = 3e-4
    difficulty: str = "hard"
    #: train-split problems, and the bundled program's rollouts drawn for each
    num_problems: int = 256
    num_rollouts: int = 32
    #: the target's potential: phi = 1 for a right answer, ``epsilon`` otherwise
    epsilon: float = 0.01
    init: str = "prm"
    problems_per_batch: int = 16
    max_steps: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.init not in TWIST_INITS:
            raise ValueError(f"init: expected one of {TWIST_INITS}, got {self.init!r}")
        if not 0.0 < self.epsilon < 1.0:
            raise ValueError(f"epsilon: expected a number in (0, 1), got {self.epsilon!r}")
        for name in ("num_problems", "num_rollouts", "problems_per_batch", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if self.num_rollouts < 2:
            raise ValueError(f"num_rollouts: expected >= 2 (negatives are weighed against each other), got {self.num_rollouts}")
