r"""Chat templates of Hugging Face checkpoints, rendered with jinja2 as transformers renders them.

A checkpoint folder carries its chat template in ``tokenizer_config.json`` (``"chat_template"``: a
string, or a list of ``{"name", "template"}`` of which ``"default"`` is used) or in a
``chat_template.jinja`` file. :func:`load_chat_template` reads it with the special tokens the
template may use (``bos_token``, ``eos_token``, ...), and :func:`render_chat` renders a list of
messages the way ``transformers``' ``apply_chat_template(..., tokenize=False)`` does: a sandboxed
jinja2 environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, a
``tojson`` filter that keeps non-ASCII characters, and the globals ``raise_exception`` and
``strftime_now``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Optional

__all__ = ["ChatTemplate", "load_chat_template", "render_chat", "TemplateError"]


class TemplateError(ValueError):
    """A chat template that cannot be read or rendered (``raise_exception`` in it, bad jinja)."""


class ChatTemplate(NamedTuple):
    """A template's source and the special tokens it may read (``{"bos_token": "<s>", ...}``)."""

    source: str
    special_tokens: dict


_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _token_text(value) -> Optional[str]:
    if isinstance(value, dict):  # a serialised AddedToken
        value = value.get("content")
    return value if isinstance(value, str) else None


def load_chat_template(folder) -> Optional[ChatTemplate]:
    """The chat template of a checkpoint folder, or ``None`` if it has none (see the module doc).
    A ``tokenizer_config.json`` that is not JSON is an error naming the file."""
    folder = Path(os.fspath(folder))
    cfg_path = folder / "tokenizer_config.json"
    cfg = {}
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TemplateError(f"{cfg_path}: not JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(cfg, dict):
            raise TemplateError(f"{cfg_path}: expected a JSON object")
    source = None
    jinja_path = folder / "chat_template.jinja"
    if jinja_path.is_file():
        source = jinja_path.read_text(encoding="utf-8")
    else:
        tpl = cfg.get("chat_template")
        if isinstance(tpl, list):
            named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
            tpl = named.get("default")
            if tpl is None:
                raise TemplateError(f"{cfg_path}: chat_template is a list without a 'default' template "
                                    f"(has {sorted(k for k in named if k)})")
        source = tpl
    if source is None:
        return None
    if not isinstance(source, str):
        raise TemplateError(f"{cfg_path}: chat_template must be a string, got {type(source).__name__}")
    specials = {k: t for k in _SPECIAL if (t := _token_text(cfg.get(k))) is not None}
    return ChatTemplate(source, specials)


def _environment():
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(f"chat template: {message}")

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols],
                                        undefined=jinja2.Undefined)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def render_chat(template: ChatTemplate, messages, *, add_generation_prompt: bool = True, **variables) -> str:
    """The text of ``messages`` (``[{"role": ..., "content": ...}, ...]``) under ``template``, with
    the generation prompt of the assistant's turn appended when ``add_generation_prompt``;
    ``variables`` reach the template too (e.g. ``tools=...``, ``enable_thinking=False``)."""
    import jinja2

    if not isinstance(messages, (list, tuple)) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in messages):
        raise ValueError("messages: expected a list of {'role': str, 'content': ...} dicts")
    try:
        compiled = _environment().from_string(template.source)
        return compiled.render(messages=list(messages), add_generation_prompt=bool(add_generation_prompt),
                               **{**template.special_tokens, **variables})
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template: {type(e).__name__}: {e}") from None
