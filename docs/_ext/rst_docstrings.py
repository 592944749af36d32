"""A griffe extension: reST-flavoured docstrings -> Markdown, before mkdocstrings renders them.

The engine's docstrings are written to read well in ``help()`` and follow the numpy style with
a few reST constructs. This turns those constructs into their Markdown / arithmatex form:

- ``:math:`x```              -> ``$x$`` (rendered by MathJax through pymdownx.arithmatex)
- ``.. math::`` + indented   -> a ``$$ ... $$`` display block
- ``:func:`f```, ``:class:`~a.B``` and the other cross-reference roles -> ```f``` / ```B```
- a paragraph ending in ``::``  -> ending in ``:`` (the indented block after it stays code)
- reST "simple tables" (rows framed by ``====  ====`` rules) -> Markdown pipe tables
- list items whose content starts less than 4 columns after the marker (reST's "1. text" with
  continuation blocks indented 3) -> re-indented to the 4 columns Python-Markdown needs;
  lettered items ("a. text") -> bullets "- (a) text"

The docstrings themselves are not changed. Loaded from ``mkdocs.yml`` (mkdocstrings python
handler option ``extensions``).
"""

from __future__ import annotations

import re

import griffe

__all__ = ["RstDocstrings", "rst_to_markdown"]

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|attr|mod|obj|exc|const|ref|term):`~?([^`]+)`")
_RULE = re.compile(r"^(\s*)(=+)(\s+=+)*\s*$")


def _xref(match: re.Match) -> str:
    target = match.group(1)
    if match.group(0).split("`", 1)[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::"):
            pad = " " * _indent(line)
            first = stripped[len(".. math::"):].strip()
            body = [first] if first else []
            i += 1
            base = None
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip() and _indent(nxt) <= _indent(line):
                    break
                if nxt.strip():
                    base = _indent(nxt) if base is None else min(base, _indent(nxt))
                body.append(nxt)
                i += 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            cut = base or 0
            out.append("")
            out.append(pad + "$$")
            out.extend(pad + (b[cut:] if b.strip() else "") for b in body)
            out.append(pad + "$$")
            out.append("")
            continue
        out.append(line)
        i += 1
    return out


_ITEM = re.compile(r"^(\s*)((?:\d+|[a-h])\.|[-*+])(\s+)(?=\S)")


def _lists(lines: list[str]) -> list[str]:
    out: list[str] = []
    item = None  # (indent of the marker, column where the item's content starts)
    for line in lines:
        m = _ITEM.match(line)
        indent = _indent(line)
        if m and (item is None or indent < item[1]):
            item = (indent, indent + len(m.group(2)) + len(m.group(3)))
            out.append(_letter_item(line, m))
            continue
        if item is not None and line.strip() and indent < item[1]:
            item = None
        if item is None or not line.strip():
            out.append(line)
            continue
        shift = max(0, item[0] + 4 - item[1])
        sub = _ITEM.match(line)
        out.append(" " * shift + (_letter_item(line, sub) if sub else line))
    return out


def _letter_item(line: str, m: re.Match) -> str:
    if not re.fullmatch(r"[a-h]\.", m.group(2)):
        return line
    return f"{m.group(1)}- ({m.group(2)[0]}) {line[m.end():]}"


def _columns(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _RULE.match(lines[i])
        if not (m and m.group(3)):  # need at least two columns
            out.append(lines[i])
            i += 1
            continue
        rules = [i]
        j = i + 1
        while j < len(lines) and len(rules) < 3:
            if not lines[j].strip():
                break
            if _RULE.match(lines[j]):
                rules.append(j)
            j += 1
        if len(rules) < 3:
            out.append(lines[i])
            i += 1
            continue
        cols = _columns(lines[i])
        pad = lines[i][: _indent(lines[i])]

        def cells(row: str) -> list[str]:
            # Chunks separated by two or more spaces go to the last column starting at or
            # before them (text that overflows its column, as reST forbids, still lands right).
            res = [""] * len(cols)
            for chunk in re.finditer(r"\S+(?: \S+)*", row):
                k = max([c for c, (start, _) in enumerate(cols) if start <= chunk.start()] or [0])
                res[k] = f"{res[k]} {chunk.group(0)}".strip()
            return res

        header = [cells(r) for r in lines[rules[0] + 1: rules[1]] if r.strip()]
        rows: list[list[str]] = []
        for r in lines[rules[1] + 1: rules[2]]:
            if not r.strip():
                continue
            c = cells(r)
            if rows and not c[0]:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], c)]
            else:
                rows.append(c)
        head = header[0] if header else [""] * len(cols)
        out.append("")
        out.append(pad + "| " + " | ".join(head) + " |")
        out.append(pad + "|" + "|".join("---" for _ in cols) + "|")
        out.extend(pad + "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
        out.append("")
        i = rules[2] + 1
    return out


def rst_to_markdown(text: str) -> str:
    """Convert the reST constructs used in ``ppl`` docstrings to Markdown."""
    lines = _tables(_lists(_math_blocks(text.split("\n"))))
    text = "\n".join(lines)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)
    text = _XREF_ROLE.sub(_xref, text)
    text = re.sub(r"(?m)^[ \t]*::[ \t]*$", "", text)        # a lone "::" line
    text = re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", text)       # "... example::" -> "... example:"
    return text


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` once the object tree is loaded."""

    def on_object(self, *, obj, loader=None, **kwargs) -> None:  # griffe >= 1
        doc = getattr(obj, "docstring", None)
        if doc is not None and doc.value:
            new = rst_to_markdown(doc.value)
            if new != doc.value:
                doc.value = new
                doc.__dict__.pop("parsed", None)
