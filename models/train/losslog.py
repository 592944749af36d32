"""The training loss of ``ppl train``: kept, shown and appended to a JSON-lines file."""

from __future__ import annotations

import json
import time
from typing import Optional

__all__ = ["LossLog"]


class LossLog:
    """A context manager: :meth:`record` keeps a step's loss in ``history`` (``loss``, ``step``),
    shows it on ``bar`` (a tqdm bar, if given) and appends ``{"step", "loss", "time"}`` (seconds
    since the start) to ``path`` (if given); on exit the file is closed and
    ``history["train_seconds"]`` set."""

    def __init__(self, path: Optional[str] = None, bar=None):
        self.history: dict = {"loss": [], "step": []}
        self.bar = bar
        self.t0 = time.time()
        self._fh = open(path, "a") if path else None

    def record(self, step: int, loss) -> float:
        value = float(loss)
        self.history["loss"].append(value)
        self.history["step"].append(int(step))
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{value:.4f}")
        if self._fh is not None:
            self._fh.write(json.dumps({"step": int(step), "loss": value, "time": round(time.time() - self.t0, 1)}) + "\n")
            self._fh.flush()
        return value

    def __enter__(self) -> "LossLog":
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
        self.history["train_seconds"] = time.time() - self.t0
