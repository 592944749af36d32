"""The model presets of ``ppl rank --model`` (a light module: ``ppl rank --help`` reads it)."""

__all__ = ["PRESETS"]

#: preset name -> the Bradley–Terry family's ``link`` and ``ties``.
PRESETS = {
    "bt": {"link": "logit", "ties": "half"},
    "bt-noties": {"link": "logit", "ties": "none"},
    "thurstone": {"link": "probit", "ties": "half"},
    "davidson": {"link": "logit", "ties": "davidson"},
    "rao-kupper": {"link": "logit", "ties": "rao_kupper"},
    "glenn-david": {"link": "probit", "ties": "rao_kupper"},
}
