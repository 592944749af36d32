"""Check a built docs site for offline use: ``python docs/_ext/check_site.py SITE_DIR``.

Fails (exit 1, naming the page) when a page loads a script or a stylesheet from another host,
when a page with math (``class="arithmatex"``) does not load the site's own MathJax, or when
MathJax or its fonts are missing from the site. ``.ci/run`` runs it after ``mkdocs build``.
"""

from __future__ import annotations

import os
import sys
from html.parser import HTMLParser
from urllib.parse import urlsplit

MATHJAX = "javascripts/mathjax/tex-mml-chtml.js"
FONTS = "javascripts/mathjax/output/chtml/fonts/woff-v2"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.math = [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        if tag == "link" and "stylesheet" in (a.get("rel") or "").split() and a.get("href"):
            self.styles.append(a["href"])
        if "arithmatex" in (a.get("class") or "").split():
            self.math = True


def _remote(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme in ("http", "https") or parts.netloc)


def check_site(site: str) -> list:
    """The problems found in the built site ``site`` (empty when it works offline)."""
    problems = []
    if not os.path.isfile(os.path.join(site, MATHJAX)):
        problems.append(f"{MATHJAX} is missing from the site")
    fonts = os.path.join(site, FONTS)
    if not os.path.isdir(fonts) or not any(n.endswith(".woff") for n in os.listdir(fonts)):
        problems.append(f"{FONTS} has no MathJax fonts")
    pages_with_math = 0
    for folder, _, names in os.walk(site):
        if os.path.relpath(folder, site).startswith("javascripts"):
            continue
        for name in names:
            if not name.endswith(".html"):
                continue
            path = os.path.join(folder, name)
            page = _Page()
            with open(path, encoding="utf-8") as f:
                page.feed(f.read())
            rel = os.path.relpath(path, site)
            for url in page.scripts + page.styles:
                if _remote(url):
                    problems.append(f"{rel}: loads {url} from another host")
            if page.math:
                pages_with_math += 1
                local = {os.path.normpath(os.path.join(folder, urlsplit(u).path)) for u in page.scripts}
                if os.path.normpath(os.path.join(site, MATHJAX)) not in local:
                    problems.append(f"{rel}: has math but does not load the site's {MATHJAX}")
    if pages_with_math == 0:
        problems.append("no page has math (class='arithmatex'): is pymdownx.arithmatex still configured?")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python docs/_ext/check_site.py SITE_DIR", file=sys.stderr)
        return 2
    problems = check_site(argv[0])
    for p in problems:
        print(f"check_site: {p}", file=sys.stderr)
    if not problems:
        print(f"check_site: {argv[0]} works offline (MathJax and its fonts are local, no remote script or stylesheet)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
