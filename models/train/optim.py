"""The optimizer of ``ppl train lm`` and ``ppl train prm``: AdamW after a linear warm-up, with
global-norm clipping (optax), built from an :class:`~ppl_models.train.config.AdamW` config."""

from __future__ import annotations

import optax

__all__ = ["warmup_adamw"]


def warmup_adamw(cfg, *, decay_to=None, clip_norm: float = 1.0, b1: float = 0.9,
                 b2: float = 0.999) -> optax.GradientTransformation:
    r"""Clip the global norm at ``clip_norm``, then AdamW (``b1``, ``b2``, ``cfg.weight_decay``) at a
    learning rate that rises linearly from 0 to ``cfg.learning_rate`` over ``cfg.warmup_steps``
    and then stays there (``decay_to=None``: the weights after step :math:`n` do not depend on
    the total number of steps, so a checkpoint of a long run is exactly a shorter run) or follows
    a cosine to ``decay_to`` :math:`\times` the peak at the last step ``cfg.steps``."""
    lr = cfg.learning_rate
    after = (optax.constant_schedule(lr) if decay_to is None
             else optax.cosine_decay_schedule(lr, max(cfg.steps - cfg.warmup_steps, 1), decay_to))
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, cfg.warmup_steps), after], [cfg.warmup_steps])
    return optax.chain(optax.clip_by_global_norm(clip_norm),
                       optax.adamw(schedule, b1=b1, b2=b2, weight_decay=cfg.weight_decay))
