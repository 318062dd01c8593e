"""Patch-classification datasets: splits with labels in memory and images read on demand.

A `PatchDataset` is what every patch reader returns: class names, a nominal µm/px, and a
`PatchSplit` per split ("train", "val" and, when the protocol has one, "test"). A split holds
its int64 labels and reads an image only when asked, so PCam's 262,144 × 96 × 96 × 3 training
set stays on disk (`H5PatchSplit`) and so do CRC's 100,000 TIFFs (`FilePatchSplit`).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pathgen.eval.datasets.files import load_rgb
from pathgen.eval.datasets.stratify import stratified_holdout

SPLITS = ("train", "val", "test")


class PatchSplit(abc.ABC):
    """One split: `labels` (int64, N), `class_names`, and `image(i)` → uint8 (H, W, 3) RGB.

    Subclasses implement `image`; `images` reads several at once (stacked when same-sized).
    Picklable, so it can go to DataLoader workers.
    """

    def __init__(
        self,
        name: str,
        labels: np.ndarray,
        class_names: tuple[str, ...],
        source: str,
        meta: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.name, self.class_names, self.source = name, class_names, source
        self.labels = np.asarray(labels, dtype=np.int64)
        self.meta = meta or {}  # per-sample extras: file names, annotator votes…

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.image(index), int(self.labels[index])

    @abc.abstractmethod
    def image(self, index: int) -> np.ndarray:
        """The RGB uint8 (H, W, 3) image at `index`."""

    def images(self, indices: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        """Images at `indices`: an (n, H, W, 3) array if all are one size, else a list."""
        images = [self.image(int(i)) for i in indices]
        return np.stack(images) if images and len({im.shape for im in images}) == 1 else images

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={len(self)}, source={self.source!r})"


class FilePatchSplit(PatchSplit):
    """A split whose images are one file each (PNG, TIFF, JPEG…), read with Pillow."""

    def __init__(
        self,
        name: str,
        paths: Sequence[Path],
        labels: np.ndarray,
        class_names: tuple[str, ...],
        source: str,
        meta: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(name, labels, class_names, source, meta)
        self.paths = [Path(p) for p in paths]
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{source}: {len(self.paths)} image paths but {len(self.labels)} labels")

    def image(self, index: int) -> np.ndarray:
        return load_rgb(self.paths[index])


class H5PatchSplit(PatchSplit):
    """A split whose images are rows of an HDF5 dataset, read by index; the file is opened on
    first use in each process (an h5py handle must not cross a fork)."""

    def __init__(self, name: str, path: Path, key: str, labels: np.ndarray, class_names: tuple[str, ...]) -> None:
        super().__init__(name, labels, class_names, str(path))
        self.path, self.key = Path(path), key
        self._file, self._pid = None, None

    def _dataset(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.key]

    def image(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: index {index} out of range for {len(self)} patches")
        return self._dataset()[index % len(self)]

    def images(self, indices: Sequence[int]) -> np.ndarray:
        """One HDF5 read for many rows, in the order asked: a contiguous slice when the rows are
        dense (extraction in order), else h5py point selection (sorted, unique)."""
        dataset = self._dataset()
        indices = np.asarray(indices, dtype=np.int64) % max(len(self), 1)
        if len(indices) == 0:
            return np.zeros((0,) + dataset.shape[1:], dataset.dtype)
        unique, inverse = np.unique(indices, return_inverse=True)
        low, high = int(unique[0]), int(unique[-1]) + 1
        if high - low <= 4 * len(unique):
            return dataset[low:high][unique - low][inverse]
        return dataset[unique][inverse]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}


@dataclass(frozen=True)
class PatchDataset:
    """What a patch reader returns.

    Attributes:
        name: Dataset name ("pcam", "crc", …).
        root: The folder (or CSV) it was read from.
        class_names: Class names in label order.
        splits: {"train", "val"[, "test"]: PatchSplit}.
        mpp: Nominal µm per pixel of the published images (None when the publisher gives none).
        protocol: How the splits were made, in words (goes into reports).
        published_sizes: Split sizes of the full public release, to tell a subset from the real thing.
    """

    name: str
    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, PatchSplit]
    mpp: float | None
    protocol: str
    published_sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.splits if name not in SPLITS]
        if unknown or "train" not in self.splits or len(self.splits) < 2:
            raise ValueError(f"{self.root}: splits must be train plus val and/or test, got {list(self.splits)}")
        for split in self.splits.values():
            if len(split) == 0:
                raise ValueError(f"{self.root}: the {split.name} split is empty")
        absent = [name for name, n in self.splits["train"].class_counts().items() if n == 0]
        if absent:
            raise ValueError(f"{self.root}: no training images of class(es) {', '.join(absent)}")

    @property
    def report_split(self) -> str:
        """The split results are reported on: "test", or "val" when the protocol has no test."""
        return "test" if "test" in self.splits else "val"

    def split(self, name: str) -> PatchSplit:
        if name not in self.splits:
            raise ValueError(f"{self.name} ({self.root}) has no {name!r} split; it has {', '.join(self.splits)}")
        return self.splits[name]

    def summary(self) -> str:
        """One line: name, sizes per split (and the published sizes when they differ)."""
        parts = []
        for name, split in self.splits.items():
            published = self.published_sizes.get(name)
            note = f" of {published:,} published" if published and published != len(split) else ""
            parts.append(f"{name} {len(split):,}{note}")
        return f"{self.name}: {len(self.class_names)} classes; " + ", ".join(parts) + f" ({self.protocol})"


@dataclass(frozen=True)
class Pool:
    """Image files with labels and per-sample extras, before they become a split."""

    paths: list[Path]
    labels: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, indices: np.ndarray) -> Pool:
        return Pool(
            [self.paths[i] for i in indices],
            self.labels[indices],
            {key: value[indices] for key, value in self.meta.items()},
        )

    def split(self, name: str, class_names: tuple[str, ...], source: str) -> FilePatchSplit:
        return FilePatchSplit(name, self.paths, self.labels, class_names, source, self.meta)


def with_holdout_val(train: Pool, val_fraction: float, seed: int) -> tuple[Pool, Pool]:
    """(train, val): a seeded stratified `val_fraction` of `train` becomes validation."""
    kept, held = stratified_holdout(train.labels, val_fraction, seed)
    return train.take(kept), train.take(held)
