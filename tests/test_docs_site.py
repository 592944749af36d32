"""The offline-docs check (docs/_ext/check_site.py, run by .ci/run on the built site) and the
mkdocs hook that puts MathJax in the site: both can fail."""

import importlib.util
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "_ext" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _site(tmp_path, page_head, fonts=True):
    site = tmp_path / "site"
    (site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").mkdir(parents=True)
    (site / "javascripts" / "mathjax" / "tex-mml-chtml.js").write_text("// MathJax")
    if fonts:
        (site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").write_bytes(b"x")
    (site / "smc").mkdir()
    (site / "smc" / "index.html").write_text(
        f"<html><head>{page_head}</head><body><div class=\"arithmatex\">\\[ x \\]</div></body></html>")
    return str(site)


def test_check_site_passes_a_local_mathjax_and_names_each_problem(tmp_path):
    check = _load("check_site").check_site
    local = '<script src="../javascripts/mathjax/tex-mml-chtml.js"></script>'
    assert check(_site(tmp_path / "a", local)) == []
    cdn = '<script src="https://unpkg.com/mathjax@3/es5/tex-mml-chtml.js"></script>'
    problems = check(_site(tmp_path / "b", cdn))
    assert any("smc/index.html: loads https://unpkg.com" in p for p in problems)
    assert any("does not load the site's" in p for p in problems)
    font_css = local + '<link rel="stylesheet" href="//fonts.example/css?family=Roboto">'
    assert any("from another host" in p for p in check(_site(tmp_path / "c", font_css)))
    assert any("no MathJax fonts" in p for p in check(_site(tmp_path / "d", local, fonts=False)))


def test_the_docs_extra_installs_mathjax_for_the_hook():
    pytest.importorskip("mkdocs")
    hook = _load("offline_mathjax")
    try:
        root = hook.mathjax_root()
    except Exception as e:  # the docs extra is not installed here
        pytest.skip(str(e))
    assert os.path.isfile(os.path.join(root, "es5", "tex-mml-chtml.js"))
    assert os.path.isdir(os.path.join(root, "es5", "output", "chtml", "fonts", "woff-v2"))
    assert os.path.isfile(os.path.join(root, "LICENSE"))
