"""Atomic file output: write to a temporary file in the same folder, fsync, rename.

A reader (or a rerun after a crash) therefore sees either the old file or the
whole new one, never a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


class UnreadableFileError(ValueError):
    """A file the suite wrote earlier is missing or damaged."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are for everyone who can read the folder
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_safe(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays to plain Python; NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """Parse a JSON file that holds an object (every file the suite writes does); a missing or corrupt one,
    or one that holds another JSON value, raises UnreadableFileError naming the path."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnreadableFileError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(
            f"{what} {path} is not valid JSON ({exc}); it was damaged or hand-edited: "
            f"delete it and rerun the step that wrote it"
        ) from None
    except OSError as exc:
        raise UnreadableFileError(f"{what} {path} cannot be read ({exc.strerror}); fix its permissions or "
                                  f"rerun the step that wrote it") from None
    if not isinstance(value, dict):
        raise UnreadableFileError(f"{what} {path} holds a JSON {type(value).__name__}, not the object the suite "
                                  f"writes; it was damaged or hand-edited: delete it and rerun the step that wrote it")
    return value


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
