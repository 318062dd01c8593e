"""Any patch dataset laid out as class folders (torchvision's ImageFolder convention).

Two layouts:
    ROOT/<class>/*.png                       one pool, split here: stratified, seeded
    ROOT/train/<class>/…, ROOT/val/…, ROOT/test/…   splits given; train required,
                                             a missing val is a stratified share of train,
                                             a missing test means results are reported on val
Classes are the union of class folder names over the splits, sorted (numerically if all are
integers); every class must have training images.
"""

from __future__ import annotations

from pathlib import Path

from pathgen.eval.datasets.files import (
    IMAGE_EXTENSIONS,
    class_folder_files,
    class_index,
    require_dir,
    sorted_class_names,
)
from pathgen.eval.datasets.patches import SPLITS, PatchDataset, Pool, with_holdout_val
from pathgen.eval.datasets.stratify import three_way_split


def split_pools(
    samples: dict[str, list[tuple[Path, str]]],
    class_names: tuple[str, ...],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[dict[str, Pool], str]:
    """Pools per split from (path, class) samples keyed by given split ("" = no split given)."""
    pools = {
        name: Pool([p for p, _ in items], class_index([c for _, c in items], class_names))
        for name, items in samples.items()
        if items
    }
    if set(pools) == {""}:
        parts = three_way_split(pools[""].labels, val_fraction, test_fraction, seed)
        rule = f"stratified {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%} (seed {seed})"
        return {name: pools[""].take(idx) for name, idx in parts.items()}, rule
    rule = "given splits"
    if "val" not in pools:
        pools["train"], pools["val"] = with_holdout_val(pools["train"], val_fraction, seed)
        rule = f"given splits; val = stratified {val_fraction:.0%} of train (seed {seed})"
    return {name: pools[name] for name in SPLITS if name in pools}, rule


def read_image_folder(
    root: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> PatchDataset:
    """An ImageFolder-style dataset (see the module docstring) as a PatchDataset."""
    root = require_dir(root, "image-folder dataset")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    given = [name for name in folders if name in SPLITS]
    if given:
        if "train" not in given:
            raise ValueError(f"{root}: has {', '.join(given)}/ but no train/ folder")
        others = [name for name in folders if name not in SPLITS]
        if others:
            raise ValueError(f"{root}: mixes split folders ({', '.join(given)}) with other folders ({others[0]!r})")
        samples = {name: class_folder_files(root / name, IMAGE_EXTENSIONS) for name in given}
    else:
        samples = {"": class_folder_files(root, IMAGE_EXTENSIONS)}
    class_names = sorted_class_names([c for items in samples.values() for _, c in items])
    pools, rule = split_pools(samples, class_names, val_fraction, test_fraction, seed)
    splits = {name: pool.split(name, class_names, str(root)) for name, pool in pools.items()}
    return PatchDataset(root.name, root, class_names, splits, None, rule)
