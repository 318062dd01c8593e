"""Model folders on disk: one ``config.json`` + one weights file, read and written in one place.

Encoders, VAEs and LDMs all live in folders of this shape. This module owns what they share:
the ``kind`` and ``format_version`` of a folder, reading its config with one-line errors that
name the file, reading weights from safetensors only (a ``.bin`` / ``.pth`` pickle is refused
unless the caller passes ``allow_pickle``, and even then only through
``torch.load(weights_only=True)``), writing every file through a temporary name and an atomic
rename (``config.json`` last, so a folder whose config exists is complete), and the SHA-256 of a
weights file, which is the identity that embeddings record.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pathgen.atomic import atomic_target

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt")
FORMAT_VERSION = 2  # 1: pathgen <= 0.x folders without a format_version (read tolerantly)


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the file and the problem (one line)."""


def read_config(folder: str | Path) -> dict[str, Any]:
    """The JSON object in ``folder/config.json``; a missing, unreadable or non-object file is one clear error."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ModelFolderError(f"{Path(folder)}: no {CONFIG} (not a model folder)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: unreadable model config ({err})") from err
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path}: a model config must be a JSON object")
    return config


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling and an atomic rename."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def write_config(folder: str | Path, config: dict[str, Any]) -> Path:
    """Write ``folder/config.json`` atomically (write it after the weights: it marks the folder complete)."""
    path = Path(folder) / CONFIG
    atomic_write_bytes(path, json.dumps(config, indent=2).encode())
    return path


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict as safetensors through a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_target(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    return path


def load_weights(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file (or, with `allow_pickle`, a weights-only torch pickle).

    Every failure is a `ModelFolderError` naming the file: a missing file, a truncated or corrupt
    safetensors file, a pickle renamed ``.safetensors``, a pickle without the explicit flag.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path}: weights file not found")
    if path.suffix in PICKLE_SUFFIXES:
        return _load_pickle(path, allow_pickle)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelFolderError(f"{path}: not a readable safetensors file ({_first_line(err)})") from err


def _load_pickle(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise ModelFolderError(
            f"{path}: a pickled weights file is not loaded by default; convert it to "
            f"safetensors, or pass --allow-pickle-weights to read it with "
            f"torch.load(weights_only=True)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise ModelFolderError(f"{path}: not a pathgen checkpoint (refused to unpickle: {_first_line(err)})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFolderError(f"{path}: not a state dict of tensors")
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


_HASHES: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a weights file (memoised per path, size and mtime within one process)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def check_kind(config: dict[str, Any], kind: str, path: Path) -> int:
    """The format version of a pathgen folder of `kind`; a folder of another kind is one clear error."""
    found = config.get("kind")
    if found != kind:
        raise ModelFolderError(f"{path / CONFIG}: kind is {found!r}, not {kind!r}")
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise ModelFolderError(
            f"{path / CONFIG}: format_version {version!r} is not one this pathgen reads "
            f"(1..{FORMAT_VERSION}); upgrade pathgen"
        )
    return version
