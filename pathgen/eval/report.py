"""Benchmark results as files: results.json + scores.npz, results.md (tables), figures.

Input everywhere is a list of plain result dicts: the summaries `probes.run_probe`,
`mil.run_mil` and `few_shot.few_shot` return, each with "encoder" and "task" added by the
caller, so `pathgen bench` (or anyone with a results.json) can call these without the probes.

Cells read "0.912 ± 0.004 [0.90, 0.92]": mean ± sd over runs and the interval stored with the
summary (its "ci_method" says which: for runs over seeds a two-level bootstrap, seeds then test
samples); a deterministic probe reads "0.912 (1 run) [0.90, 0.92]". Few-shot results (mean ± sd
over episodes, interval over episodes) have their own table. Every column names the split it
reports: "val (selection split)" where the protocol has no separate test split.

The per-run test scores go to scores.npz beside results.json (plain arrays, read with
allow_pickle=False), so a paired comparison can be recomputed from the files alone.
Torch-free.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

import pathgen
from pathgen.atomic import atomic_target
from pathgen.eval.compare import compare_results
from pathgen.eval.figures import is_few_shot, ordered, plot_bars, plot_roc

Result = dict[str, Any]
ARRAY_KEYS = ("test_scores", "test_labels")
TABLE_METRICS = ("balanced_accuracy", "auroc", "binary_f1", "macro_f1")
METRIC_TITLES = {
    "balanced_accuracy": "Balanced accuracy",
    "auroc": "AUROC",
    "binary_f1": "F1 of the positive class (binary tasks; eva's BinaryF1Score)",
    "macro_f1": "Macro-F1 (unweighted mean over classes; eva's MulticlassF1Score)",
}
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "timm", "matplotlib")


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


def _atomic_write(path: Path, write: Any) -> Path:
    """Call write(temp_path) on a temporary file beside `path`, then rename it into place."""
    with atomic_target(path) as temp:
        write(temp)
    return path


def environment() -> dict[str, Any]:
    """Python, pathgen and library versions and the git commit of the pathgen checkout (None if not a repo)."""
    versions = {"python": platform.python_version(), "pathgen": pathgen.__version__}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(pathgen.__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=Path(pathgen.__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        commit += " (uncommitted changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit}


def write_json(
    results: Sequence[Result],
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    comparisons: Sequence[dict] | None = None,
) -> Path:
    """results.json ({"pathgen_version", "environment", "metadata", "results", "comparisons"}) + scores.npz.

    The arrays "test_scores" / "test_labels" of result i go to scores.npz as "i_scores" /
    "i_labels" (its "scores_key" is i); both files are written to a temporary name and renamed.
    """
    for i, result in enumerate(results):
        missing = {"encoder", "task", "probe", "metrics"} - set(result)
        if missing:
            raise ValueError(f"result {i} lacks {sorted(missing)}; add 'encoder' and 'task' to run_probe's summaries")
    path = Path(path)
    arrays, plain = {}, []
    for i, result in enumerate(results):
        entry = {k: v for k, v in result.items() if k not in ARRAY_KEYS}
        if result.get("test_scores") is not None:
            arrays[f"{i}_scores"], arrays[f"{i}_labels"] = np.asarray(result["test_scores"]), result["test_labels"]
            entry["scores_key"] = i
        plain.append(entry)
    if arrays:

        def write_arrays(temp: Path) -> None:
            with open(temp, "wb") as handle:
                np.savez_compressed(handle, **arrays)

        _atomic_write(path.with_name("scores.npz"), write_arrays)
    document = {
        "pathgen_version": pathgen.__version__,
        "environment": environment(),
        "metadata": metadata or {},
        "results": plain,
        "comparisons": list(comparisons or []),
    }
    text = json.dumps(_jsonable(document), indent=1) + "\n"
    return _atomic_write(path, lambda temp: temp.write_text(text))


def load_results(path: str | Path) -> list[Result]:
    """The results of a results.json, with their test scores put back from scores.npz when it exists."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: not a pathgen results.json ({error})") from error
    scores_path = path.with_name("scores.npz")
    if scores_path.is_file():
        with np.load(scores_path, allow_pickle=False) as arrays:
            for result in results:
                key = result.get("scores_key")
                if key is not None and f"{key}_scores" in arrays:
                    result["test_scores"], result["test_labels"] = arrays[f"{key}_scores"], arrays[f"{key}_labels"]
    return results


def split_label(result: Result) -> str:
    """ "test", or "val (selection split)" where the result was reported on the split used for selection."""
    split = result.get("report_split", "test")
    return "val (selection split)" if split == "val" else split


def format_cell(
    result: Result, metric: str = "balanced_accuracy", split: str = "test", digits: int = 3, ci_digits: int = 2
) -> str:
    """ "0.912 ± 0.004 [0.90, 0.92]"; "0.912 (1 run) […]" for one run; "—" not measured; "n/a" undefined."""
    stats = result.get("metrics", {}).get(split, {}).get(metric)
    if stats is None:
        return "—"
    if stats["mean"] is None or not math.isfinite(stats["mean"]):
        return "n/a"
    sd = stats.get("sd")
    cell = f"{stats['mean']:.{digits}f} " + (
        f"± {sd:.{digits}f}" if sd is not None and result.get("runs", 2) > 1 else "(1 run)"
    )
    interval = result.get("ci", {}).get(split, {}).get(metric)
    if interval is not None and None not in interval:
        cell += f" [{interval[0]:.{ci_digits}f}, {interval[1]:.{ci_digits}f}]"
    return cell


def markdown_table(results: Sequence[Result], metric: str = "balanced_accuracy", split: str = "test") -> str:
    """One row per encoder, one column per task / probe (with the split it reports), cells as `format_cell`."""
    if not results:
        return ""
    encoders = ordered([r["encoder"] for r in results])
    columns = ordered([(r["task"], r["probe"], split_label(r)) for r in results])
    cells = {(r["encoder"], r["task"], r["probe"]): format_cell(r, metric, split) for r in results}
    lines = [
        "| encoder | " + " | ".join(f"{task} / {probe} ({where})" for task, probe, where in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for encoder in encoders:
        row = [cells.get((encoder, task, probe), "—") for task, probe, _ in columns]
        lines.append(f"| {encoder} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def recall_tables(results: Sequence[Result]) -> list[str]:
    """Per multi-class task / probe: per-class recall (mean ± sd over runs), one column per class."""
    lines = []
    for task, probe in ordered(
        [(r["task"], r["probe"]) for r in results if r.get("n_classes", 2) > 2 and r.get("per_class_recall")]
    ):
        rows = [r for r in results if r["task"] == task and r["probe"] == probe]
        names = rows[0].get("class_names") or [str(c) for c in range(rows[0]["n_classes"])]
        lines += [
            f"**{task} / {probe}** ({split_label(rows[0])}): recall per class, mean ± sd over runs",
            "",
            "| encoder | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for r in rows:
            recall = r["per_class_recall"]["test"]
            sds = recall["sd"] or [None] * len(names)
            cells = [
                "n/a" if m is None else f"{m:.3f}" + (f" ± {s:.3f}" if s is not None else "")
                for m, s in zip(recall["mean"], sds)
            ]
            lines.append(f"| {r['encoder']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def comparison_table(rows: Sequence[dict]) -> str:
    """Markdown of `compare.compare_results` rows: Δ [95 % interval], p; DeLong beside AUROC."""
    if not rows:
        return ""
    lines = [
        "| task / probe (split) | metric | encoder − baseline | Δ [95% interval] | p (paired bootstrap) "
        "| DeLong Δ AUROC [95%] | DeLong p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        delong = row.get("delong")
        dl = (
            (f"{delong['delta']:+.3f} [{delong['low']:+.3f}, {delong['high']:+.3f}]", f"{delong['p']:.3g}")
            if delong
            else ("—", "—")
        )
        where = "val (selection split)" if row.get("report_split") == "val" else "test"
        lines.append(
            f"| {row['task']} / {row['probe']} ({where}) | {row['metric'].replace('_', ' ')} | "
            f"{row['encoder']} − {row['baseline']} | {row['delta']:+.3f} [{row['low']:+.3f}, "
            f"{row['high']:+.3f}] | {row['p']:.3g} | {dl[0]} | {dl[1]} |"
        )
    return "\n".join(lines) + "\n"


def header_lines(metadata: dict[str, Any] | None) -> list[str]:
    """Title, library versions, git commit and the data checksums given in `metadata["data"]`."""
    env = environment()
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = ["# Benchmark results", "", f"- versions: {versions}", f"- git commit: {env['git_commit'] or 'unknown'}"]
    for task, splits in ((metadata or {}).get("data") or {}).items():
        lines.append(f"- data {task}: " + ", ".join(f"{split} {digest}" for split, digest in splits.items()))
    return lines + [""]


def results_markdown(
    results: Sequence[Result], comparisons: Sequence[dict] = (), metadata: dict[str, Any] | None = None
) -> str:
    """The whole results.md: header, one table per metric, per-class recall, few-shot, comparisons."""
    runs = [r for r in results if not is_few_shot(r)]
    shots = [r for r in results if is_few_shot(r)]
    method = next((r["ci_method"] for r in runs if r.get("runs", 1) > 1 and r.get("ci_method")), None)
    lines = header_lines(metadata)
    lines += [
        "Cells: mean ± sd over runs [95% interval]; a deterministic probe is one run. Interval: "
        f"{method or 'percentile bootstrap of the test samples'}.",
        "",
    ]
    for metric in TABLE_METRICS:
        if any(metric in r["metrics"].get("test", {}) for r in runs):
            lines += [f"## {METRIC_TITLES[metric]}", "", markdown_table(runs, metric)]
    recall = recall_tables(runs)
    if recall:
        lines += ["## Recall per class (multi-class tasks)", "", *recall]
    if shots:
        lines += [
            "## Few-shot (SimpleShot)",
            "",
            "Cells: mean ± sd over episodes [95% interval over episodes, "
            "normal approximation] — not comparable with the bootstrap intervals above.",
            "",
            markdown_table(shots, "balanced_accuracy"),
        ]
    if comparisons:
        lines += [
            "## Encoder comparison (paired, same test samples)",
            "",
            comparisons[0]["method"] + "; DeLong's test (1988) on the seed-mean scores for binary AUROC.",
            "",
            comparison_table(comparisons),
        ]
    return "\n".join(lines)


def write_report(
    results: Sequence[Result],
    out_dir: str | Path,
    metric: str = "balanced_accuracy",
    metadata: dict[str, Any] | None = None,
    baseline: str | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """results.json, scores.npz, results.md and the figures in `out_dir`; returns the paths written.

    Encoders are compared with `baseline` (default: the first encoder) when there are several.
    """
    out_dir = Path(out_dir)
    encoders = ordered([r["encoder"] for r in results])
    comparisons = compare_results(results, baseline or encoders[0], n_boot) if len(encoders) > 1 else []
    json_path = write_json(results, out_dir / "results.json", metadata, comparisons)
    text = results_markdown(results, comparisons, metadata)
    markdown_path = _atomic_write(out_dir / "results.md", lambda temp: temp.write_text(text))
    return {
        "json": json_path,
        "markdown": markdown_path,
        "bars": plot_bars(results, out_dir, metric),
        "roc": plot_roc(results, out_dir),
        "comparisons": comparisons,
    }
