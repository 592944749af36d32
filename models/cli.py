"""The ``ppl`` command line (the app around the engine: it lives beside ``ppl``, which never
imports this package).

The subcommands plug into :data:`SUBCOMMANDS`, a dict from a subcommand name to a *setup function*
``setup(parser: argparse.ArgumentParser) -> None`` that adds the subcommand's arguments and
sets ``parser.set_defaults(func=handler)``, where ``handler(args) -> int`` does the work:

- ``ppl scale``          the main job: inference-time scaling of the bundled LM on a task
- ``ppl rank FILE``      Bayesian judge / ranking models on a file of comparisons
- ``ppl analyze FILE``   posterior analysis (ArviZ) of a saved result
- ``ppl train lm|prm``   train the bundled LM or process reward model

Each subcommand's module imports its heavy dependencies lazily, inside the handlers, so that
``ppl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: Subcommand name -> setup function that fills in its ``argparse`` sub-parser.
SUBCOMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def _builtin() -> dict:
    """The package's own subcommands (each module imports its heavy dependencies in ``run``)."""
    from ppl_models.judges import cli as rank
    from ppl_models.scale import cli as scale
    from ppl_models.scaling import cli as analyze
    from ppl_models.train import cli as train

    return {"scale": scale.setup, "rank": rank.setup, "analyze": analyze.setup, "train": train.setup}

_DESCRIPTION = (
    "ppl: inference-time scaling of language models as probabilistic programs in JAX "
    "(SMC, particle Gibbs, tempering and NUTS on Feynman-Kac models)."
)


def _version() -> str:
    """The installed package's version (from its metadata: no JAX import), else ``ppl.__version__``."""
    try:
        from importlib.metadata import version

        return version("ppl")
    except Exception:  # pragma: no cover - a source tree that is not installed
        from ppl import __version__

        return str(__version__)


class _VersionAction(argparse.Action):
    """``--version`` that resolves the version only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ppl {_version()}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="ppl",
        description=_DESCRIPTION,
        epilog=(
            "Library use: import ppl; see README.md and the docs."
        ),
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    for name, setup in _builtin().items():
        SUBCOMMANDS.setdefault(name, setup)
    if SUBCOMMANDS:
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, setup in SUBCOMMANDS.items():
            doc = (setup.__doc__ or "").strip().splitlines()
            help_ = doc[0] if doc else None
            setup(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``ppl`` console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
