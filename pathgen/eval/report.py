"""Benchmark results as one JSON file, a Markdown table and plots (bar chart with intervals, ROC).

Input everywhere is a list of plain result dicts: the summaries `probes.run_probe` and
`few_shot.few_shot` return, each with two keys added by the caller — "encoder" and "task" — so
`pathgen bench` (or anyone with a JSON file of results) can call these without the probes.
Table cells read "0.912 ± 0.004 [0.90, 0.92]": mean ± sd over runs (seeds or few-shot
episodes) and the confidence interval stored with the summary (its "ci_method" says which).
Torch-free; plots use matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

import pathgen  # noqa: E402

from pathgen.atomic import write_json_atomic

Result = dict[str, Any]
LINESTYLES = ("-", "--", ":", "-.")  # ROC curves: one colour per encoder, one line style per probe


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays → Python; NaN/inf → None, so the file is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(results: Sequence[Result], path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write every number of every result to one JSON file: {"pathgen_version", "metadata", "results"}."""
    for i, result in enumerate(results):
        missing = {"encoder", "task", "probe", "metrics"} - set(result)
        if missing:
            raise ValueError(f"result {i} lacks {sorted(missing)}; add 'encoder' and 'task' to run_probe's summaries")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"pathgen_version": pathgen.__version__, "metadata": metadata or {}, "results": list(results)}
    write_json_atomic(path, _jsonable(document), indent=1)
    return path


def format_cell(result: Result, metric: str = "balanced_accuracy", split: str = "test", digits: int = 3,
                ci_digits: int = 2) -> str:
    """"0.912 ± 0.004 [0.90, 0.92]" for one metric of one result; "—" where it was not measured."""
    stats = result.get("metrics", {}).get(split, {}).get(metric)
    if stats is None:
        return "—"
    cell = f"{stats['mean']:.{digits}f} ± {stats['sd']:.{digits}f}"
    interval = result.get("ci", {}).get(split, {}).get(metric)
    if interval is not None:
        cell += f" [{interval[0]:.{ci_digits}f}, {interval[1]:.{ci_digits}f}]"
    return cell


def _ordered(values: Sequence[str]) -> list[str]:
    """Unique values in order of first appearance."""
    return list(dict.fromkeys(values))


def markdown_table(results: Sequence[Result], metric: str = "balanced_accuracy", split: str = "test") -> str:
    """One row per encoder, one column per task / probe, cells as in `format_cell`."""
    encoders = _ordered([r["encoder"] for r in results])
    columns = _ordered([(r["task"], r["probe"]) for r in results])
    cells = {(r["encoder"], r["task"], r["probe"]): format_cell(r, metric, split) for r in results}
    lines = [
        f"{metric} on {split}: mean ± sd over runs [confidence interval]",
        "",
        "| encoder | " + " | ".join(f"{task} / {probe}" for task, probe in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for encoder in encoders:
        row = [cells.get((encoder, task, probe), "—") for task, probe in columns]
        lines.append(f"| {encoder} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def plot_bars(results: Sequence[Result], out_dir: str | Path, metric: str = "balanced_accuracy",
              split: str = "test") -> list[Path]:
    """One PNG per task: bars = mean over runs, grouped by encoder, one colour per probe, CI whiskers."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in _ordered([r["task"] for r in results]):
        rows = [r for r in results if r["task"] == task and metric in r["metrics"].get(split, {})]
        if not rows:
            continue
        encoders, probes = _ordered([r["encoder"] for r in rows]), _ordered([r["probe"] for r in rows])
        width = 0.8 / len(probes)
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(encoders) * max(1, len(probes)) ** 0.5 + 2), 3.6))
        for j, probe in enumerate(probes):
            _bar_series(ax, [r for r in rows if r["probe"] == probe], encoders, j * width - 0.4 + width / 2, width,
                        probe, metric, split)
        chance = {"balanced_accuracy": 1 / rows[0].get("n_classes", math.inf), "auroc": 0.5}.get(metric, 0.0)
        if chance > 0:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.set_xticks(range(len(encoders)), encoders, rotation=20 if len(encoders) > 3 else 0)
        ax.set_ylabel(f"{metric.replace('_', ' ')} ({split})")
        ax.set_ylim(0.0, 1.05)
        ax.set_title(f"{task}: mean over runs, whiskers = {100 * (1 - rows[0].get('alpha', 0.05)):.0f}% CI")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        paths.append(_save(fig, out_dir / f"bars_{_safe_name(task)}.png"))
    return paths


def _bar_series(ax: Any, rows: Sequence[Result], encoders: list[str], offset: float, width: float,
                label: str, metric: str, split: str) -> None:
    """Bars of one probe across encoders, with asymmetric CI whiskers where an interval exists."""
    by_encoder = {r["encoder"]: r for r in rows}
    xs = [i + offset for i, e in enumerate(encoders) if e in by_encoder]
    means = [by_encoder[e]["metrics"][split][metric]["mean"] for e in encoders if e in by_encoder]
    intervals = [by_encoder[e].get("ci", {}).get(split, {}).get(metric) for e in encoders if e in by_encoder]
    low = [m - ci[0] if ci else 0.0 for m, ci in zip(means, intervals)]
    high = [ci[1] - m if ci else 0.0 for m, ci in zip(means, intervals)]
    ax.bar(xs, means, width, label=label, yerr=[np.clip(low, 0, None), np.clip(high, 0, None)], capsize=3)


def plot_roc(results: Sequence[Result], out_dir: str | Path) -> list[Path]:
    """One PNG per binary task: the stored ROC curve of each encoder × probe, AUROC in the legend."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in _ordered([r["task"] for r in results]):
        rows = [r for r in results if r["task"] == task and r.get("roc")]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(4.8, 4.6))
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
        colours = {e: f"C{i % 10}" for i, e in enumerate(_ordered([r["encoder"] for r in rows]))}
        styles = {p: LINESTYLES[i % len(LINESTYLES)] for i, p in enumerate(_ordered([r["probe"] for r in rows]))}
        for r in rows:
            auc = r["metrics"].get("test", {}).get("auroc", {}).get("mean", float("nan"))
            ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], color=colours[r["encoder"]], linestyle=styles[r["probe"]],
                    linewidth=1.4, label=f"{r['encoder']} · {r['probe']} ({auc:.3f})")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_title(f"{task}: test ROC (first run; legend: mean AUROC)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        paths.append(_save(fig, out_dir / f"roc_{_safe_name(task)}.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: Sequence[Result], out_dir: str | Path, metric: str = "balanced_accuracy",
                 metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.json + results.md + bar charts + ROC curves in `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    json_path = write_json(results, out_dir / "results.json", metadata)
    markdown_path = out_dir / "results.md"
    markdown_path.write_text(markdown_table(results, metric, "test"))
    return {"json": json_path, "markdown": markdown_path, "bars": plot_bars(results, out_dir, metric),
            "roc": plot_roc(results, out_dir)}
