"""What the commands write: output paths checked before any compute, atomic writes, run metadata."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["OutputError", "check_output", "atomic_path", "write_text_atomic", "jsonable", "run_meta", "sha256_of"]


class OutputError(ValueError):
    """An output path that cannot be written, or would overwrite a result (names the flag)."""


def check_output(path, flag: str, *, overwrite: bool = False) -> Path:
    """``path`` as a :class:`Path` if it can be written: its folder exists or can be made and is
    writable, it is not a folder, and it does not exist unless ``overwrite``. Call it before any
    compute, so that a long run never ends in an error about where to write."""
    path = Path(os.fspath(path))
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file path")
    if path.exists() and not overwrite:
        raise OutputError(f"{flag} {path}: exists; pass --overwrite to replace it")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{flag} {path}: cannot create the folder {folder} ({e.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{flag} {path}: the folder {folder} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path in ``path``'s folder to write to; renamed onto ``path`` when the block
    ends without an error (readers never see a partial file), removed otherwise."""
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(os.fspath(path))


def jsonable(x):
    """``x`` as plain JSON values: dicts (keys as text), lists (from tuples and arrays), numbers
    (numpy scalars unwrapped; a non-finite float as ``"inf"``/``"-inf"`` or ``None`` for NaN),
    text, booleans and ``None``; anything else as its ``repr``."""
    import math

    import numpy as np

    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "-inf" if x < 0 else None
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_meta(folders: Iterable = (), config: Optional[dict] = None) -> dict:
    """What produced a result: versions of ppl and its numerical stack, Python, the platform and
    the JAX devices, the date (UTC), the SHA-256 of every weight and config file in ``folders``
    (checkpoints), and ``config``."""
    from importlib import metadata

    versions = {}
    for name in ("ppl", "jax", "jaxlib", "numpyro", "flax", "optax", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    meta = {"versions": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        import jax

        devs = jax.devices()
        meta["devices"] = {"backend": jax.default_backend(), "count": len(devs),
                           "kind": getattr(devs[0], "device_kind", str(devs[0]))}
    except Exception as e:  # the metadata never fails a run
        meta["devices"] = {"error": str(e)}
    checkpoints = {}
    for folder in folders:
        folder = Path(os.fspath(folder))
        for f in sorted(folder.glob("*")):
            if f.is_file() and f.suffix in (".safetensors", ".json"):
                checkpoints[str(f)] = sha256_of(f)
    meta["checkpoints"] = checkpoints
    if config is not None:
        meta["config"] = config
    return meta
