"""Labelled synthetic benchmark data for a Gen-SIS run: `pathgen synth-dataset pcam` and `camelyon16`
copies in one folder, marked complete (complete.json) only once both are written and read back."""

from __future__ import annotations

import shutil
from pathlib import Path

from pathgen.atomic import write_json_atomic
from pathgen.eval.datasets import read_dataset
from pathgen.eval.synth_datasets import DEFAULT_PCAM_STAIN_SHIFT, write_synthetic_camelyon16, write_synthetic_pcam

COMPLETE = "complete.json"


def write_bench_data(
    folder: str | Path,
    pcam: list[int],
    camelyon16: list[int],
    slide_size: list[int],
    seed: int = 0,
    pcam_stain_shift: float = DEFAULT_PCAM_STAIN_SHIFT,
) -> Path:
    """folder/pcam (train, val, test patches) and folder/camelyon16 (train, test slides of slide_size)."""

    if len(pcam) != 3 or len(camelyon16) != 2 or len(slide_size) != 2:
        raise ValueError(
            f"bench.synthetic needs pcam [train, val, test], camelyon16 [train, test] and slide_size "
            f"[width, height]; got {pcam}, {camelyon16}, {slide_size}"
        )
    folder = Path(folder)
    for name in ("pcam", "camelyon16"):
        if (folder / name).exists():  # left by a killed run: the writers need an empty folder
            shutil.rmtree(folder / name)
    write_synthetic_pcam(folder / "pcam", *pcam, seed=seed, stain_shift=pcam_stain_shift)
    write_synthetic_camelyon16(folder / "camelyon16", *camelyon16, seed=seed, size=(slide_size[0], slide_size[1]))
    summaries = {name: read_dataset(name, folder / name).summary() for name in ("pcam", "camelyon16")}
    write_json_atomic(folder / COMPLETE, summaries, indent=1)
    return folder
