"""Benchmark figures: bars with intervals per task, mean ROC curves with a band; PNG, SVG and PDF.

Input is the list of result summaries `pathgen.eval.report` takes. Bars of runs over seeds
(bootstrap intervals) and few-shot episodes (intervals over episodes) are never drawn in one
figure: few-shot results get their own figure whose title says what its whiskers are. Every
figure is saved with ``bbox_inches="tight"`` so no title or legend is clipped. Torch-free; the
Agg backend needs no display.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

Result = dict[str, Any]
LINESTYLES = ("-", "--", ":", "-.")  # ROC curves: one colour per encoder, one line style per probe
FIGURE_FORMATS = ("png", "svg", "pdf")


def ordered(values: Sequence[Any]) -> list[Any]:
    """Unique values in order of first appearance."""
    return list(dict.fromkeys(values))


def safe_name(text: str) -> str:
    """`text` reduced to a file-name-safe token."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def is_few_shot(result: Result) -> bool:
    """True for a summary whose interval is over few-shot episodes, not a bootstrap."""
    return str(result.get("probe", "")).startswith("few_shot")


def save_figure(fig: Any, stem: Path) -> Path:
    """Write `stem`.png/.svg/.pdf with a tight bounding box (nothing clipped); returns the PNG path."""
    for fmt in FIGURE_FORMATS:
        fig.savefig(stem.with_suffix(f".{fmt}"), dpi=120, bbox_inches="tight")
    plt.close(fig)
    return stem.with_suffix(".png")


def _title(ax: Any, text: str, width: int = 60) -> None:
    ax.set_title("\n".join(textwrap.wrap(text, width)), fontsize=9)


def _bar_series(
    ax: Any, rows: Sequence[Result], encoders: list[str], offset: float, width: float, label: str, metric: str
) -> None:
    """Bars of one probe across encoders, with asymmetric CI whiskers where an interval exists."""
    by_encoder = {r["encoder"]: r for r in rows}
    present = [e for e in encoders if e in by_encoder]
    xs = [encoders.index(e) + offset for e in present]
    means = [by_encoder[e]["metrics"]["test"][metric]["mean"] for e in present]
    intervals = [by_encoder[e].get("ci", {}).get("test", {}).get(metric) for e in present]
    low = [m - ci[0] if ci and ci[0] is not None else 0.0 for m, ci in zip(means, intervals)]
    high = [ci[1] - m if ci and ci[1] is not None else 0.0 for m, ci in zip(means, intervals)]
    ax.bar(xs, means, width, label=label, yerr=[np.clip(low, 0, None), np.clip(high, 0, None)], capsize=3)


def _bars_figure(rows: list[Result], task: str, metric: str, whiskers: str, stem: Path) -> Path:
    encoders, probes = ordered([r["encoder"] for r in rows]), ordered([r["probe"] for r in rows])
    width = 0.8 / len(probes)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(encoders) * max(1, len(probes)) ** 0.5 + 2), 3.6))
    for j, probe in enumerate(probes):
        _bar_series(
            ax, [r for r in rows if r["probe"] == probe], encoders, j * width - 0.4 + width / 2, width, probe, metric
        )
    chance = {"balanced_accuracy": 1 / rows[0].get("n_classes", math.inf), "auroc": 0.5}.get(metric, 0.0)
    if chance > 0:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(range(len(encoders)), encoders, rotation=20 if len(encoders) > 3 else 0)
    ax.set_ylabel(f"{metric.replace('_', ' ')} ({rows[0].get('report_split', 'test')})")
    ax.set_ylim(0.0, 1.05)
    _title(ax, f"{task}: {whiskers}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, stem)


def plot_bars(results: Sequence[Result], out_dir: str | Path, metric: str = "balanced_accuracy") -> list[Path]:
    """Per task: bars_<task> (runs over seeds, two-level bootstrap whiskers) and, if any, fewshot_<task>."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in ordered([r["task"] for r in results]):
        rows = [r for r in results if r["task"] == task and metric in r["metrics"].get("test", {})]
        alpha = rows[0].get("alpha", 0.05) if rows else 0.05
        level = f"{100 * (1 - alpha):.0f}%"
        runs = [r for r in rows if not is_few_shot(r)]
        if runs:
            paths.append(
                _bars_figure(
                    runs,
                    task,
                    metric,
                    f"mean over runs, whiskers = {level} bootstrap interval (seeds and test samples resampled)",
                    out_dir / f"bars_{safe_name(task)}",
                )
            )
        shots = [r for r in rows if is_few_shot(r)]
        if shots:
            paths.append(
                _bars_figure(
                    shots,
                    task,
                    metric,
                    f"few-shot: mean over episodes, whiskers = {level} interval over episodes (not a bootstrap)",
                    out_dir / f"fewshot_{safe_name(task)}",
                )
            )
    return paths


def plot_roc(results: Sequence[Result], out_dir: str | Path) -> list[Path]:
    """One figure per binary task: each encoder × probe's mean ROC over runs with a ±1 sd band.

    The legend's AUROC is the area under the curve drawn (`probes.roc_points`' "auroc_of_curve").
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in ordered([r["task"] for r in results]):
        rows = [r for r in results if r["task"] == task and r.get("roc")]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(4.8, 4.6))
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
        colours = {e: f"C{i % 10}" for i, e in enumerate(ordered([r["encoder"] for r in rows]))}
        styles = {p: LINESTYLES[i % len(LINESTYLES)] for i, p in enumerate(ordered([r["probe"] for r in rows]))}
        for r in rows:
            roc, colour = r["roc"], colours[r["encoder"]]
            fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
            sd = np.asarray(roc.get("tpr_sd") or np.zeros_like(tpr))
            ax.fill_between(fpr, np.clip(tpr - sd, 0, 1), np.clip(tpr + sd, 0, 1), color=colour, alpha=0.15, lw=0)
            ax.plot(
                fpr,
                tpr,
                color=colour,
                linestyle=styles[r["probe"]],
                linewidth=1.4,
                label=f"{r['encoder']} · {r['probe']} ({roc['auroc_of_curve']:.3f}, "
                f"{roc.get('runs', 1)} run{'s' if roc.get('runs', 1) > 1 else ''})",
            )
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        _title(
            ax,
            f"{task}: mean ROC over runs ({rows[0].get('report_split', 'test')}), band ±1 sd; "
            "legend: AUROC of the mean curve",
            50,
        )
        ax.legend(fontsize=7, loc="lower right")
        paths.append(save_figure(fig, out_dir / f"roc_{safe_name(task)}"))
    return paths
