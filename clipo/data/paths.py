"""Where data files are found: the working directory first, then ``data.root`` (default ``$CLIPO_DATA_DIR``).

The paper's recipes name their files relative to the official CLIPO repository's ``data/`` folder
(``train/gsm8k.parquet``, ``test/math.parquet``, ...). Point ``data.root`` — or, once for every run, the
environment variable ``CLIPO_DATA_DIR`` — at a copy of that folder; your own files can be given by any
absolute or working-directory-relative path as before.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "data_root", "resolve_data_path"]

#: The environment variable naming the default ``data.root``.
DATA_DIR_ENV = "CLIPO_DATA_DIR"


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """``root`` if given, else ``$CLIPO_DATA_DIR`` if set, else None."""
    chosen = root if root is not None else os.environ.get(DATA_DIR_ENV) or None
    return Path(chosen).expanduser() if chosen is not None else None


def resolve_data_path(spec: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The file a data spec names.

    An absolute path, or a relative one that exists from the working directory, is used as it is; otherwise a
    relative path is looked up under :func:`data_root`. A path found nowhere is returned unchanged, so the
    loader's "file not found" error names what the user wrote.
    """
    path = Path(spec).expanduser()
    if path.is_absolute() or path.exists():
        return path
    base = data_root(root)
    if base is not None and (base / path).exists():
        return base / path
    return path
