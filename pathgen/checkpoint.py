"""Training checkpoints: everything needed to continue exactly, saved atomically, loaded safely.

A checkpoint holds the model, optimizer and grad-scaler states, the step, and every random state
(Python, NumPy, torch CPU and CUDA). It is written to a temporary file and renamed, so a kill
during the write leaves the previous checkpoint intact; it is read with
``torch.load(weights_only=True)``, so a checkpoint file cannot run code.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from pathgen.atomic import atomic_target


def rng_state() -> dict:
    """Every random generator's state as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically (temporary file, then rename)."""
    with atomic_target(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint without unpickling arbitrary objects; errors name the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no checkpoint to resume from") from err
    except pickle.UnpicklingError as err:  # weights_only refused an object: never offer to unpickle it
        raise ValueError(
            f"{path}: not a pathgen checkpoint (refused to unpickle: it holds objects other than "
            "tensors and plain values)"
        ) from err
    except Exception as err:  # noqa: BLE001 -- torch raises many types for a bad file
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {first_line})") from err
