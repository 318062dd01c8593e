"""The ablation's results table: `OUT/report/ablation.md` (+ one bar chart per family, results.json).

Per family and metric, one row per variant and one column per task / probe. With one pretraining
seed a cell is the bench's "mean ± sd over probe seeds [95% interval]"; with several, "mean ± sd
over pretraining seeds" of the per-seed means. ▲ / ▼ mark a variant whose interval lies wholly
above / below its family baseline's at every pretraining seed; unmarked cells are within the
intervals, which at toy scale is the expected reading.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml

from pathgen.eval.compare import compare_results
from pathgen.eval.report import comparison_table as paired_table
from pathgen.eval.report import format_cell, load_results
from pathgen.stages.gensis_report import METRICS, interval_note, plot_comparison, verdict
from pathgen.stages.steps import Stage

INIT_ROW = "step0"  # the row of a family's initial weights in the tables


def _label(family: str, variant: str, seed: int) -> str:
    return f"{family}_{variant}_s{seed}"


def _stats(result: dict | None, metric: str) -> dict | None:
    return (result or {}).get("metrics", {}).get("test", {}).get(metric)


def variant_cell(
    by_key: dict, family: str, variant: str, baseline: str, seeds: list[int], task: str, probe: str, metric: str
) -> tuple[str, str]:
    """(cell text, verdict mark) of one variant on one task / probe / metric."""
    runs = [by_key.get((_label(family, variant, s), task, probe)) for s in seeds]
    bases = [by_key.get((_label(family, baseline, s), task, probe)) for s in seeds]
    if any(_stats(r, metric) is None for r in runs):
        return "—", ""
    if len(seeds) == 1:
        text = format_cell(runs[0], metric)
    else:
        means = [_stats(r, metric)["mean"] for r in runs]
        text = f"{np.mean(means):.3f} ± {np.std(means, ddof=1):.3f} ({len(seeds)} seeds)"
    if variant == baseline:
        return text, ""
    verdicts = {verdict(b, r, metric) for b, r in zip(bases, runs)}
    mark = {"higher": " ▲", "lower": " ▼"}.get(verdicts.pop(), "") if len(verdicts) == 1 else ""
    return text, mark


def family_section(
    results: list[dict], out: Path, family: str, info: dict, seeds: list[int], report_dir: Path
) -> list[str]:
    """The tables, the counts of differences beyond the intervals and the chart of one family."""
    baseline, variants = info["baseline"], dict(info["variants"])
    if info.get("init"):
        variants[INIT_ROW] = ["initial weights (step 0): ▼ here means the baseline learned something"]
    by_key = {(r["encoder"], r["task"], r["probe"]): r for r in results}
    pairs = list(dict.fromkeys((r["task"], r["probe"]) for r in results))
    run_cfg = yaml.safe_load((out / "ssl" / _label(family, baseline, seeds[0]) / "config.yaml").read_text())
    train = run_cfg["train"]
    lines = [
        f"## {family}",
        "",
        f"{run_cfg['method']} on {run_cfg['backbone']['name']}, every variant "
        f"{train.get('max_steps') or train.get('epochs')} steps × batch {train['batch_size']}, pretraining "
        f"seeds {seeds}. Variants: "
        + "; ".join(f"**{v}** = {', '.join(s) or 'no generative switch'}" for v, s in variants.items())
        + ".",
        "",
    ]
    for metric in METRICS:
        lines += [
            f"{metric.replace('_', ' ')} (test)",
            "",
            "| variant | " + " | ".join(f"{t} / {p}" for t, p in pairs) + " |",
            "|---|" + "---|" * len(pairs),
        ]
        marks: dict[str, list[str]] = {}
        for variant in variants:
            cells = [variant_cell(by_key, family, variant, baseline, seeds, t, p, metric) for t, p in pairs]
            marks[variant] = [m for _, m in cells]
            lines.append(f"| {variant} | " + " | ".join(text + mark for text, mark in cells) + " |")
        lines.append("")
        for variant, found in marks.items():
            if variant != baseline:
                up, down = found.count(" ▲"), found.count(" ▼")
                lines.append(
                    f"- {variant} vs {baseline} ({metric}): {up} above, {down} below, "
                    f"{len(found) - up - down} of {len(found)} within the intervals"
                )
        lines.append("")
    labels = {_label(family, v, seeds[0]): v for v in variants}
    family_results = [r for r in results if r["encoder"] in labels]
    plot_comparison(family_results, list(labels), labels, report_dir / f"{family}.png")
    paired = compare_results(family_results, _label(family, baseline, seeds[0]))
    if paired:
        lines += [
            f"Paired comparison with {baseline} (pretraining seed {seeds[0]}, same test samples): "
            + paired[0]["method"]
            + ".",
            "",
            paired_table(paired),
            "",
        ]
    return lines + [f"![{family}]({family}.png)", ""]


def write_ablation_report(out: str | Path, plan: dict, seeds: list[int]) -> Path:
    """OUT/report/ablation.md from OUT/bench/results.json."""
    out = Path(out)
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(out / "bench" / "results.json")
    shutil.copy2(out / "bench" / "results.json", report_dir / "results.json")
    probe_seeds = sorted({s for r in results for s in r.get("seeds", [])})
    cells = (
        f"Cells: mean ± sd over probe / MIL-head seeds {probe_seeds} [95% interval] with one pretraining seed; "
        f"{interval_note(results)}"
        if len(seeds) == 1
        else f"Cells: mean ± sd over the {len(seeds)} pretraining seeds {seeds} of each variant's per-seed mean "
        f"(each per-seed mean over probe / MIL-head seeds {probe_seeds}), marked '({len(seeds)} seeds)'; the "
        f"sd holds pretraining variance. Per pretraining seed: {interval_note(results)}"
    )
    lines = [
        "# Generative-augmentation ablation",
        "",
        f"{cells} ▲ / ▼: the variant's interval and its range over probe seeds both lie wholly above / below "
        "its family baseline's (at every pretraining seed); anything else is within the intervals. Variants "
        "are compared with their own family's baseline only.",
        "",
    ]
    for family, info in plan.items():
        lines += family_section(results, out, family, info, seeds, report_dir)
    (report_dir / "ablation.md").write_text("\n".join(lines))
    return report_dir / "ablation.md"


def ablation_report_stage(out: Path, plan: dict, seeds: list[int]) -> Stage:
    """The table as the last stage of `pathgen ablate`."""

    return Stage(
        "report",
        out / "report",
        {"plan": plan, "seeds": seeds},
        lambda: (out / "report" / "ablation.md").is_file(),
        lambda: write_ablation_report(out, plan, seeds),
        ("bench",),
    )
