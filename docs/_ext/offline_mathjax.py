"""mkdocs hook: MathJax inside the built site, so that the docs' math renders with no network.

The MathJax 3 distribution comes from PyPI, as the ``django-static-mathjax`` package (the ``docs``
extra pins it; it ships MathJax's ``es5`` build and needs no Django to be read). Its ``es5``
folder, with MathJax's licence, is added to the site under ``javascripts/mathjax/``, and
``mkdocs.yml`` loads ``javascripts/mathjax/tex-mml-chtml.js`` from there: the fonts and the TeX
extensions that the component loads on demand are found beside it. ``docs/_ext/check_site.py``
checks the built site (no script from another host; the local MathJax present on every page
with math).
"""

from __future__ import annotations

import importlib.util
import os

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

DEST = "javascripts/mathjax"


def mathjax_root() -> str:
    """The folder holding MathJax's ``es5`` build and ``LICENSE`` in the installed package."""
    spec = importlib.util.find_spec("mathjax")
    root = None if spec is None or spec.origin is None else os.path.join(os.path.dirname(spec.origin), "static", "mathjax")
    if root is None or not os.path.isfile(os.path.join(root, "es5", "tex-mml-chtml.js")):
        raise PluginError("MathJax is not installed: the docs need the 'docs' extra "
                          "(pip install '.[docs]', which brings django-static-mathjax)")
    return root


def on_files(files, config):
    root = mathjax_root()
    es5 = os.path.join(root, "es5")
    for folder, _, names in os.walk(es5):
        for name in sorted(names):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, es5).replace(os.sep, "/")
            files.append(File.generated(config, f"{DEST}/{rel}", abs_src_path=path))
    files.append(File.generated(config, f"{DEST}/LICENSE", abs_src_path=os.path.join(root, "LICENSE")))
    return files
