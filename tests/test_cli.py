"""The ``ppl`` console script (:mod:`ppl_models.cli`): ``--help`` and ``--version``, in process and as a subprocess."""

import subprocess
import sys

import pytest

from ppl_models import cli


def _expected_version():
    try:
        from ppl import __version__
    except ImportError:  # ppl/__init__.py not written yet
        return "0.1.0"
    return __version__


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == f"ppl {_expected_version()}"
    assert out.strip() == "ppl 0.1.0"


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ppl")
    assert "--version" in out
    assert "Feynman-Kac" in out


def test_no_arguments_prints_help(capsys):
    assert cli.main([]) == 0
    assert capsys.readouterr().out.startswith("usage: ppl")


def test_unknown_option_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--no-such-option"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_subcommand_registry(monkeypatch, capsys):
    """A setup function in SUBCOMMANDS becomes a working subcommand."""

    def setup(parser):
        """Say hello."""
        parser.add_argument("name")
        parser.set_defaults(func=lambda args: print(f"hello {args.name}") or 3)

    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", setup)
    assert cli.main(["hello", "world"]) == 3
    assert capsys.readouterr().out == "hello world\n"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "hello" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, expected",
    [(["--version"], "ppl 0.1.0"), (["--help"], "usage: ppl")],
)
def test_module_subprocess(args, expected):
    proc = subprocess.run(
        [sys.executable, "-m", "ppl_models.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(expected)


def test_help_of_every_command_imports_no_jax():
    # `ppl --help` and every subcommand's --help read only light modules (under a second).
    code = ("import sys\nfrom ppl_models.cli import main\n"
            "for argv in (['--help'], ['scale', '--help'], ['rank', '--help'], ['analyze', '--help'],\n"
            "             ['train', 'lm', '--help'], ['train', 'prm', '--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = sorted(m for m in ('jax', 'numpyro', 'flax', 'ppl', 'matplotlib') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:]


def test_light_copies_of_library_choices_agree():
    # ppl scale's --pf-weighting / --pf-select choices are written in a light module; they must be
    # the library's.
    from ppl.lm.potentials import WEIGHTINGS
    from ppl.scaling.particle_filter import SELECTS, resampling_of
    from ppl.smc.resampling import SCHEMES, Annealed
    from ppl_models.scale.config import PF_RESAMPLINGS, PF_SELECTS, PF_WEIGHTINGS

    assert PF_WEIGHTINGS == WEIGHTINGS and PF_SELECTS == SELECTS
    for name in PF_RESAMPLINGS:
        scheme = resampling_of(name, 8)
        assert scheme in SCHEMES if name != "entropic" else isinstance(scheme, Annealed)
