r"""What a scaling method is to the code that runs it: a spec, and a prepared call.

Each method of :mod:`ppl.scaling` is declared with :func:`method`, next to its definition. The
decorated function validates its arguments and returns a
:class:`~ppl.smc.batch.ProblemCall` (the compiled core for one prompt, its traced arguments and
the host-side ``finish``); the public function runs it. The same call runs one prompt, or many
with :func:`batched`. The declaration also records a :class:`MethodSpec`: how a budget of
:math:`B` rollouts becomes the method's arguments, whether it needs a reward, and how it selects
from a pool of rollouts. A job (``ppl scale``) reads the specs instead of keeping its own tables.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, Optional, Sequence, Union

import jax

from ppl.smc.batch import prepare_problems, run_problems
from ppl.smc.sharding import device_mesh

__all__ = ["MethodSpec", "method", "spec", "specs", "batched", "prompt_mesh", "PROMPT_AXIS"]

#: The mesh axis that holds the problems of a batch.
PROMPT_AXIS = "prompts"

#: ``budget(B, settings) -> (args, options) | None``: a method's arguments after the program at a
#: budget of ``B`` rollouts (``None`` where ``B`` does not fit), given a job's ``settings``.
BudgetRule = Callable[[int, Mapping], Optional[tuple]]


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """How a job runs one method.

    Attributes
    ----------
    name
        The method's name (its function's name); ``aliases`` are other names a job may use.
    run
        The public function ``run(program, *args, key=, reward=, answer_fn=, **options)``.
    prepare
        The same arguments, returning a :class:`~ppl.smc.batch.ProblemCall` (``None``: the
        method has no batched path).
    uses_reward
        Whether ``run`` takes ``reward=``.
    budget
        ``budget(B, settings) -> (args, options)`` or ``None`` where the budget does not fit. The
        settings a rule reads (with defaults): ``tau``, ``weighting``, ``select`` (the particle
        filter's), ``beam_width``, ``iterations``, ``mh_steps``, ``alpha``, ``max_steps`` (the
        program's, for A*).
    from_pool
        ``from_pool(rollouts, k, answer_fn, settings)``: the method on the first ``k`` rollouts
        of a shared pool (:class:`~ppl.scaling.sampling.Rollouts`); ``None`` if it needs its own run.
    """

    name: str
    run: Callable
    prepare: Optional[Callable] = None
    uses_reward: bool = True
    budget: Optional[BudgetRule] = None
    from_pool: Optional[Callable] = None
    aliases: tuple = ()

    def at(self, budget: int, settings: Mapping) -> Optional[tuple]:
        """``(args, options)`` at ``budget`` rollouts (``None`` where it does not fit)."""
        if self.budget is None:
            raise ValueError(f"methods: {self.name} has no budget rule (it is not a method of a budget job)")
        return self.budget(int(budget), settings)


_SPECS: dict = {}


def method(*, batchable: bool = True, uses_reward: bool = True, budget: Optional[BudgetRule] = None,
           from_pool: Optional[Callable] = None, aliases: Sequence[str] = ()):
    """Declare a scaling method (see :class:`MethodSpec`). With ``batchable`` the decorated
    function returns a :class:`~ppl.smc.batch.ProblemCall` and the method is the function that
    runs it (same signature and docstring); otherwise the decorated function is the method."""

    def declare(fn):
        if batchable:
            @functools.wraps(fn)
            def run(*args, **kwargs):
                return fn(*args, **kwargs)()
        else:
            run = fn
        _SPECS[fn.__name__] = MethodSpec(fn.__name__, run, fn if batchable else None, uses_reward, budget,
                                         from_pool, tuple(aliases))
        return run

    return declare


def specs() -> dict:
    """``{name: MethodSpec}`` of every declared method, in order of declaration."""
    return dict(_SPECS)


def spec(name: Union[str, Callable]) -> MethodSpec:
    """The :class:`MethodSpec` of a method (its name, an alias, or the function)."""
    for s in _SPECS.values():
        if name == s.name or name in s.aliases or name is s.run:
            return s
    raise ValueError(f"method: unknown method {getattr(name, '__name__', name)!r}; choose from "
                     f"{', '.join(_SPECS)}")


# ------------------------------------------------------------------------------ many prompts
def prompt_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-d mesh with axis ``"prompts"`` for :func:`batched` (:func:`~ppl.smc.sharding.device_mesh`:
    ``devices`` is ``None`` for every device, an integer :math:`D` for the first :math:`D`, or a
    sequence of devices)."""
    return device_mesh(devices, PROMPT_AXIS)


def batched(method: Union[str, Callable], programs: Sequence, *args, keys, reward=None,
            mesh: Optional[jax.sharding.Mesh] = None, problems_per_device: int = 1,
            axis_name: Optional[str] = None, **options) -> list:
    r"""Run ``method`` on every program of ``programs``: one result per program, in order.

    ``batched(m, programs, *args, keys=keys, reward=rewards, **options)[i]`` is the result of
    ``m(programs[i], *args, key=keys[i], reward=rewards[i], **options)``, computed with one
    compiled function (:func:`ppl.smc.batch.run_problems`); with ``mesh`` the problems are
    data-parallel over the mesh, and with ``problems_per_device=1`` every result equals the
    one-prompt call bit for bit.

    Parameters
    ----------
    method
        A method with a batched path or its name: ``rollouts``, ``best_of_n``,
        ``weighted_best_of_n``, ``self_consistency``, ``weighted_majority``,
        ``particle_filter``, ``beam_search``, ``dvts``. Particle Gibbs, parallel tempering,
        power sampling and RPC run per problem.
    programs
        :class:`~ppl.lm.LMProgram` s with the same static structure (e.g.
        ``program.with_prompt(p)`` for prompts that fit its padded width).
    *args, **options
        The method's other arguments, shared by every problem (budget, ``answer_fn``, ...).
    keys
        One ``jax.random`` key per program (a sequence or a key array with a leading axis).
    reward
        One reward model for every program, or a sequence with one per program (e.g. the
        oracle of each problem); rewards must share their ``static_key``.
    mesh
        ``None`` (run on the default device) or a :class:`jax.sharding.Mesh`, e.g.
        :func:`prompt_mesh`; the problems go on ``axis_name`` (default: the mesh's only axis,
        else ``"prompts"``), other mesh axes replicate them.
    problems_per_device
        :math:`b`: problems each device runs in one call; :math:`b > 1` vmaps the core (see
        :mod:`ppl.smc.batch` for its cost and rounding).

    Returns
    -------
    list
        The method's results (:class:`~ppl.scaling.ScalingResult`, or
        :class:`~ppl.scaling.Rollouts` for ``rollouts``).
    """
    s = spec(method) if isinstance(method, str) or any(method is t.run for t in _SPECS.values()) else None
    if s is None or s.prepare is None or (isinstance(method, str) and method != s.name):
        names = ", ".join(t.name for t in _SPECS.values() if t.prepare is not None)
        raise ValueError(f"method: {getattr(method, '__name__', method)!r} has no batched path; choose from {names} "
                         "or call the method once per problem")
    calls = prepare_problems(s.prepare, programs, args, options, keys=keys, reward=reward, where="ppl.scaling.batched")
    return run_problems(calls, mesh=mesh, problems_per_device=problems_per_device, axis_name=axis_name,
                        default_axis=PROMPT_AXIS)
