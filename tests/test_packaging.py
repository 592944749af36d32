"""Packaging: the app folder models/ installs as ``ppl_models``, never as a bare ``models``."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_listed_under_its_import_name():
    cfg = _config()
    assert cfg["package-dir"] == {"ppl_models": "models"}
    found = set()
    for folder, name in (("ppl", "ppl"), ("models", "ppl_models")):
        for root, _, files in os.walk(ROOT / folder):
            if "__init__.py" in files:
                rel = Path(root).relative_to(ROOT / folder)
                found.add(".".join((name,) + rel.parts))
    assert set(cfg["packages"]) == found
    assert {p.split(".")[0] for p in cfg["packages"]} == {"ppl", "ppl_models"}


def _installed():
    """The installed distribution (not a build's ``ppl.egg-info`` left in the checkout)."""
    paths = [p for p in sys.path if p and Path(p).resolve() != ROOT]
    dists = [d for d in importlib.metadata.distributions(path=paths) if d.metadata["Name"] == "ppl"]
    assert dists, "ppl is not installed"
    return dists[0]


def test_the_installed_distribution_has_no_top_level_models():
    dist = _installed()
    assert set((dist.read_text("top_level.txt") or "").split()) == {"ppl", "ppl_models"}
    tops = {f.parts[0] for f in dist.files or [] if len(f.parts) > 1}
    assert "models" not in tops, sorted(tops)
    # The console script runs the app's CLI.
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"ppl": "ppl_models.cli:main"}
