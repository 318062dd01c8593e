"""`pathgen bench`: frozen encoders × benchmark tasks × probes → results.json, results.md, plots.

A task YAML (benchmarks/suites/pcam.yaml) names a dataset and its reader options, the probes
(patch level) or MIL models (slide level) with their configs, the seeds, and for slide tasks the
tiling. A suite YAML lists task files (paths relative to it) plus overrides. Features come from
`pathgen.eval.features` (cached, so a second encoder or a re-run only trains heads).

Overrides ``a.b=c`` apply to every task; ``<task name>.a.b=c`` to that task only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pathgen.atomic import write_text_atomic
from pathgen.config import ConfigError, from_dict, load_config, parse_override, to_dict
from pathgen.eval.datasets import (
    SLIDE_DATASETS,
    PatchDataset,
    SlideDataset,
    check_reader_options,
    read_dataset,
)
from pathgen.eval.features import (
    FrozenEncoder,
    dataset_key,
    patch_features,
    slide_features,
)
from pathgen.eval.few_shot import FewShotConfig
from pathgen.eval.knn_probe import KnnProbeConfig
from pathgen.eval.linear_probe import LinearProbeConfig
from pathgen.eval.mil import MILConfig, run_mil
from pathgen.eval.probes import LogisticProbeConfig, run_probe
from pathgen.eval.report import markdown_table, write_report
from tiling.config import TilingConfig

LEVELS = ("patch", "slide")


@dataclass
class DataConfig:
    """Where a task's dataset is: a `pathgen.eval.datasets.DATASETS` key, its root, reader options."""

    dataset: str = "pcam"
    root: str = ""
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """An unknown dataset or reader option fails when the suite is read, not mid-benchmark."""
        try:
            check_reader_options(self.dataset, self.options)
        except ValueError as err:
            raise ConfigError(str(err)) from None


PROBE_CONFIGS = {
    "linear": LinearProbeConfig,
    "logistic": LogisticProbeConfig,
    "knn": KnnProbeConfig,
    "few_shot": FewShotConfig,
}


def _typed(cls: type, values: dict | None, section: str) -> Any:
    try:
        return from_dict(cls, values or {})
    except ConfigError as err:
        raise ConfigError(f"{section}: {err}") from err


@dataclass
class ProbesConfig:
    """Patch-level probes to run, each {config fields} (``{}`` = defaults); a probe left out is not run."""

    linear: dict | None = None
    logistic: dict | None = None
    knn: dict | None = None
    few_shot: dict | None = None

    def selected(self) -> dict[str, Any]:
        """{probe name: typed config} of the probes present (unknown keys raise naming the probe)."""
        return {
            name: _typed(cls, getattr(self, name), f"probes.{name}")
            for name, cls in PROBE_CONFIGS.items()
            if getattr(self, name) is not None
        }


@dataclass
class TaskConfig:
    """One benchmark task: a dataset, the heads trained on its frozen features, and how.

    Attributes:
        mil: {run name: MILConfig fields}; the model defaults to the run name ("abmil", "mean_pool").
        device: Where encoders and heads run: "cpu", "cuda" or "auto".
        num_workers: Image-reading processes during feature extraction.
    """

    name: str = ""
    level: str = "patch"
    data: DataConfig = field(default_factory=DataConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    mil: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    tiling: TilingConfig = field(default_factory=TilingConfig)
    batch_size: int = 256
    num_workers: int = 0
    device: str = "cpu"
    n_boot: int = 1000

    def mil_configs(self) -> dict[str, MILConfig]:
        """The `mil` section as typed MILConfigs (unknown keys raise naming the run)."""
        return {
            run_name: _typed(MILConfig, {"model": run_name, **(values or {})}, f"mil.{run_name}")
            for run_name, values in self.mil.items()
        }


@dataclass
class SuiteConfig:
    """Several tasks: `tasks` are task YAML paths relative to the suite file, `overrides` as on the CLI."""

    name: str = ""
    tasks: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


def check_task(task: TaskConfig, source: Path) -> TaskConfig:
    """Raise ConfigError (naming `source`) for a task that cannot run."""
    problems = []
    if task.level not in LEVELS:
        problems.append(f"level must be one of {LEVELS}, got {task.level!r}")
    if (task.data.dataset in SLIDE_DATASETS) != (task.level == "slide"):
        problems.append(f"dataset {task.data.dataset!r} does not fit level {task.level!r}")
    if task.level == "patch" and not task.probes.selected():
        problems.append("a patch task needs at least one entry under probes (linear, logistic, knn, few_shot)")
    if task.level == "slide" and not task.mil:
        problems.append("a slide task needs at least one entry under mil (abmil, mean_pool, transmil, clam_sb)")
    if not task.seeds:
        problems.append("seeds is empty")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    task.mil_configs()
    return task


def _route(overrides: list[str], task_names: set[str]) -> dict[str | None, list[str]]:
    """Split overrides into those for one task ("<task>.key=v", prefix removed) and those for all (None)."""
    routed: dict[str | None, list[str]] = {None: []}
    for text in overrides:
        key, _ = parse_override(text)
        head, _, rest = text.partition(".")
        if head in task_names and "." in key:
            routed.setdefault(head, []).append(rest)
        else:
            routed[None].append(text)
    return routed


def load_tasks(path: str | Path, overrides: list[str] | None = None) -> list[TaskConfig]:
    """The resolved, checked tasks of a task or suite YAML with `overrides` applied."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a task or suite file must be a mapping")
    if "tasks" not in raw:
        return [check_task(load_config(TaskConfig, path, overrides), path)]
    suite = load_config(SuiteConfig, path)
    task_paths = [(path.parent / task).resolve() for task in suite.tasks]
    for task_path in task_paths:
        if not task_path.is_file():
            raise ConfigError(f"{path}: task file {task_path} does not exist")
    names = {(yaml.safe_load(p.read_text()) or {}).get("name") or p.stem for p in task_paths}
    routed = _route([*suite.overrides, *(overrides or [])], names)
    tasks = []
    for task_path in task_paths:
        name = (yaml.safe_load(task_path.read_text()) or {}).get("name") or task_path.stem
        task = load_config(TaskConfig, task_path, [*routed[None], *routed.get(name, [])])
        tasks.append(check_task(dataclasses.replace(task, name=task.name or name), task_path))
    return tasks


def _tag(summaries: list[dict], encoder: str, task: str, report_split: str, class_names: Sequence[str]) -> list[dict]:
    """Add who, what and where: encoder, task, the split the numbers are on, and the class names."""
    return [
        {**s, "encoder": encoder, "task": task, "report_split": report_split, "class_names": list(class_names)}
        for s in summaries
    ]


def split_checksum(labels: np.ndarray, sample_ids: Sequence[str]) -> str:
    """First 16 hex digits of SHA-256 over a split's sample ids (file names, slide ids) and labels.

    Two results with the same checksum were computed on the same samples with the same labels;
    it is cheap (no image bytes are read), so it identifies the split, not the pixel content.
    """
    digest = hashlib.sha256("\n".join(sample_ids).encode())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def data_checksums(dataset: PatchDataset | SlideDataset) -> dict[str, str]:
    """{split: `split_checksum`} of a patch or slide dataset."""
    if isinstance(dataset, SlideDataset):
        return {
            name: split_checksum(dataset.labels(name), [r.slide_id for r in dataset.split(name)])
            for name in ("train", "val", "test")
            if dataset.split(name)
        }
    out = {}
    for name, split in dataset.splits.items():
        ids = [p.name for p in getattr(split, "paths", [])] or [f"{split.source}#{i}" for i in range(len(split))]
        out[name] = split_checksum(split.labels, ids)
    return out


def run_patch_task(encoder: FrozenEncoder, task: TaskConfig, dataset: PatchDataset) -> list[dict]:
    """Every probe of `task` on cached features; reports on test (val when there is no test)."""
    key = dataset_key(task.data.dataset, task.data.root, task.data.options)
    splits = {
        name: (patch_features(encoder, split, key, task.batch_size, task.num_workers), split.labels)
        for name, split in dataset.splits.items()
    }
    train, val = splits["train"], splits.get("val", splits.get("test"))
    test = splits.get("test", val)
    results = []
    for name, cfg in task.probes.selected().items():
        results += run_probe(
            name, *train, *val, *test, cfg=cfg, seeds=task.seeds, device=str(encoder.device), n_boot=task.n_boot
        )
    return _tag(results, encoder.name, task.name, dataset.report_split, dataset.class_names)


def run_slide_task(encoder: FrozenEncoder, task: TaskConfig, dataset: SlideDataset) -> list[dict]:
    """Every MIL run of `task` on bags of cached tile features."""
    key = dataset_key(task.data.dataset, task.data.root, task.data.options)
    bags, _ = slide_features(encoder, dataset, key, task.tiling, task.batch_size, task.num_workers)
    split = {
        name: ([bags[r.slide_id] for r in dataset.split(name)], dataset.labels(name))
        for name in ("train", "val", "test")
        if dataset.split(name)
    }
    train, val = split["train"], split.get("val", split.get("test"))
    test = split.get("test", val)
    results = [
        {
            **run_mil(*train, *val, *test, cfg=cfg, seeds=task.seeds, device=str(encoder.device), n_boot=task.n_boot),
            "probe": run_name,
        }
        for run_name, cfg in task.mil_configs().items()
    ]
    return _tag(results, encoder.name, task.name, dataset.report_split, dataset.class_names)


def resolve_device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def run_bench(
    tasks: list[TaskConfig], encoders: list[str], out_dir: str | Path, cache_dir: str | Path, log=print
) -> list[dict]:
    """Run every encoder on every task; write config.yaml, results.json, results.md and plots to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"encoders": list(encoders), "cache_dir": str(cache_dir), "tasks": [to_dict(t) for t in tasks]}
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    results: list[dict] = []
    checksums: dict[str, dict[str, str]] = {}
    for task in tasks:
        dataset = read_dataset(task.data.dataset, task.data.root, **task.data.options)
        checksums[task.name] = data_checksums(dataset)
        for spec in encoders:
            encoder = FrozenEncoder(spec, cache_dir, resolve_device(task.device))
            log(f"pathgen bench: {encoder.name} on {task.name} ({dataset.summary()})")
            runner = run_slide_task if task.level == "slide" else run_patch_task
            results += runner(encoder, task, dataset)
    write_report(
        results, out_dir, metadata={"config": resolved, "data": checksums}, n_boot=max(task.n_boot for task in tasks)
    )
    return results


def table(results: list[dict]) -> str:
    """The Markdown table of balanced accuracy on test (one row per encoder, one column per task)."""
    return markdown_table(results)


__all__ = ["DataConfig", "ProbesConfig", "SuiteConfig", "TaskConfig", "load_tasks", "run_bench", "table"]
