"""The report of a Gen-SIS run: `OUT/report/report.md`, comparison.png and the generated-view grids.

Everything is read back from the run's files: bench/results.json (per task and probe: mean ± sd over
probe seeds and a bootstrap confidence interval of the test set), bank_*/eval/metrics.json,
bank_*/grid.png, the resolved configs and status.json. A difference between encoders is called
only when both their 95% intervals and their ranges over probe seeds are disjoint (a conservative
reading, see `verdict`); every other difference is reported as within the intervals, whatever its sign.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import yaml

from pathgen.atomic import read_json
from pathgen.eval.compare import compare_results
from pathgen.eval.report import comparison_table as paired_table
from pathgen.eval.report import format_cell, load_results
from pathgen.stages.generator_reading import generator_reading
from pathgen.stages.run_status import read_status
from pathgen.stages.steps import Stage

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

METRICS = ("balanced_accuracy", "auroc")
LABELS = {"baseline": "baseline (round 1)", "gensis": "Gen-SIS (round 2)", "init": "round 1 at step 0"}


VERDICT_TEXT = {
    "higher": "above the baseline (disjoint)",
    "lower": "below the baseline (disjoint)",
    "within": "within the intervals",
    "none": "no interval",
}
CEILING = 0.99


def _spans(result: dict | None, metric: str) -> list[list[float]]:
    """The result's 95% interval and the range of its per-seed values (the two sources of spread)."""
    stats = (result or {}).get("metrics", {}).get("test", {}).get(metric) or {}
    ci = (result or {}).get("ci", {}).get("test", {}).get(metric)
    spans = [list(ci)] if ci else []
    return spans + ([[min(stats["values"]), max(stats["values"])]] if stats.get("values") else [])


def verdict(base: dict | None, other: dict | None, metric: str) -> str:
    """ "higher" / "lower" when `other` lies wholly above / below `base` in both its 95% interval and its
    range over seeds, else "within".

    Both are needed: the bench's interval is a bootstrap of the test set that averages the seeds, so
    it can be narrow while seeds disagree (on a small test set a head that always predicts one class
    scores the same on every resample); the seed range alone ignores test-set sampling.
    """
    base_spans, other_spans = _spans(base, metric), _spans(other, metric)
    if not base_spans or len(base_spans) != len(other_spans):
        return "none"
    if all(o[0] > b[1] for b, o in zip(base_spans, other_spans)):
        return "higher"
    if all(o[1] < b[0] for b, o in zip(base_spans, other_spans)):
        return "lower"
    return "within"


def comparison_rows(results: list[dict], encoders: list[str], baseline: str) -> list[dict]:
    """Per (task, probe, metric): each encoder's result, its Δ of means and verdict against `baseline`."""
    by_key = {(r["encoder"], r["task"], r["probe"]): r for r in results}
    pairs = list(dict.fromkeys((r["task"], r["probe"]) for r in results))
    rows = []
    for task, probe in pairs:
        base = by_key.get((baseline, task, probe))
        for metric in METRICS:
            if base is None or metric not in base["metrics"].get("test", {}):
                continue
            row = {
                "task": task,
                "probe": probe,
                "metric": metric,
                "n_test": base.get("n_test"),
                "results": {e: by_key.get((e, task, probe)) for e in encoders},
                "delta": {},
                "verdict": {},
            }
            for encoder in encoders:
                other = row["results"][encoder]
                if encoder == baseline or other is None:
                    continue
                row["delta"][encoder] = (
                    other["metrics"]["test"][metric]["mean"] - base["metrics"]["test"][metric]["mean"]
                )
                row["verdict"][encoder] = verdict(base, other, metric)
            rows.append(row)
    return rows


def comparison_table(rows: list[dict], encoders: list[str], baseline: str, labels: dict[str, str]) -> str:
    """Markdown: one line per task / probe / metric, a cell per encoder, Δ and verdict per non-baseline."""
    others = [e for e in encoders if e != baseline]
    head = ["task / probe", "metric", "n test"] + [labels.get(e, e) for e in encoders]
    head += [f"Δ {labels.get(e, e)}" for e in others] + [f"{labels.get(e, e)} vs baseline" for e in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{row['task']} / {row['probe']}", row["metric"].replace("_", " "), str(row["n_test"] or "—")]
        cells += [format_cell(row["results"][e], row["metric"]) if row["results"][e] else "—" for e in encoders]
        cells += [f"{row['delta'][e]:+.3f}" if e in row["delta"] else "—" for e in others]
        cells += [VERDICT_TEXT[row["verdict"][e]] if e in row["verdict"] else "—" for e in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(results: list[dict], encoders: list[str], labels: dict[str, str], path: Path) -> Path:
    """One panel per metric: bars = mean over seeds per task / probe, one colour per encoder, CI whiskers."""
    pairs = list(dict.fromkeys((r["task"], r["probe"]) for r in results))
    by_key = {(r["encoder"], r["task"], r["probe"]): r for r in results}
    fig, axes = plt.subplots(
        len(METRICS), 1, figsize=(max(6.0, 1.1 * len(pairs) + 2), 3.2 * len(METRICS)), squeeze=False
    )
    width = 0.8 / len(encoders)
    for ax, metric in zip(axes[:, 0], METRICS):
        for j, encoder in enumerate(encoders):
            xs, means, low, high = [], [], [], []
            for i, (task, probe) in enumerate(pairs):
                result = by_key.get((encoder, task, probe), {})
                stats = result.get("metrics", {}).get("test", {}).get(metric)
                if stats is None:
                    continue
                ci = result.get("ci", {}).get("test", {}).get(metric) or [stats["mean"]] * 2
                xs.append(i - 0.4 + (j + 0.5) * width)
                means.append(stats["mean"])
                low.append(max(stats["mean"] - ci[0], 0.0))
                high.append(max(ci[1] - stats["mean"], 0.0))
            ax.bar(xs, means, width, yerr=np.array([low, high]), capsize=3, label=labels.get(encoder, encoder))
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(pairs)), [f"{t}\n{p}" for t, p in pairs], fontsize=7)
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel(f"{metric.replace('_', ' ')} (test)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0, 0].set_title(
        "mean over probe seeds; whiskers = 95% intervals (the report says which, per probe)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_sentence(rows: list[dict], encoder: str, label: str) -> str:
    """How many comparisons go beyond the intervals (naming them), and how many sit at the ceiling."""
    judged = [r for r in rows if encoder in r["verdict"]]
    beyond = [r for r in judged if r["verdict"][encoder] in ("higher", "lower")]
    ceiling = sum(all(_mean(r, e) >= CEILING for e in r["results"]) for r in judged)
    note = (
        f" {ceiling} of the {len(judged)} are at the ceiling (every encoder ≥ {CEILING}), where the task "
        "cannot separate encoders."
        if ceiling
        else ""
    )
    if not beyond:
        return (
            f"**No difference shown.** All {len(judged)} comparisons of {label} with the baseline lie within the "
            f"95% intervals: at this scale this run cannot tell the two encoders apart.{note}"
        )
    named = "; ".join(
        f"{r['task']} / {r['probe']} {r['metric'].replace('_', ' ')} {r['delta'][encoder]:+.3f} "
        f"({'above' if r['verdict'][encoder] == 'higher' else 'below'})"
        for r in beyond
    )
    return (
        f"{len(beyond)} of {len(judged)} comparisons of {label} with the baseline go beyond the 95% intervals "
        f"({named}); the other {len(judged) - len(beyond)} lie within them.{note}"
    )


def learned_sentence(rows: list[dict]) -> str:
    """Whether round 1 moved beyond its own initial weights: without that, no round can be told apart."""
    judged = [r["verdict"]["init"] for r in rows if "init" in r["verdict"]]
    above, below = judged.count("lower"), judged.count("higher")  # verdicts are of init against the baseline
    if not judged:
        return ""
    if not above:
        return (
            f"**Round 1 is not above its own initial weights** (step 0, same seed) beyond the intervals in any "
            f"of {len(judged)} comparisons ({below} below): on these tasks this budget of SSL shows no measurable "
            "learning, so no difference between the rounds is to be expected either."
        )
    return (
        f"Round 1 is above its own initial weights (step 0, same seed) beyond the intervals in {above} of "
        f"{len(judged)} comparisons ({below} below)."
    )


def _mean(row: dict, encoder: str) -> float:
    stats = (row["results"].get(encoder) or {}).get("metrics", {}).get("test", {}).get(row["metric"])
    return stats["mean"] if stats else float("nan")


def interval_note(results: list[dict]) -> str:
    """Which interval each probe carries (bench results say so per result)."""
    methods: dict[str, list[str]] = {}
    for r in results:
        probes = methods.setdefault(r.get("ci_method") or "none", [])
        if r["probe"] not in probes:
            probes.append(r["probe"])
    return " ".join(f"Intervals of {', '.join(probes)}: {method}." for method, probes in methods.items())


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def generator_numbers(metrics: dict, link: Path) -> list[str]:
    """One bank's eval-gen numbers, each beside its resolution-matched reference."""
    size, lines = metrics.get("image_size"), []
    vae = metrics.get("vae", {})
    for name, m in metrics["encoders"].items():
        fd, fid, refs = m["frechet"], m["fidelity"], m.get("references", {})
        pr = m.get("precision_recall") or {}
        views, real = pr.get("views") or {}, pr.get("real_vs_real") or {}

        def ref(kind: str, key: str = "retrieval_top1", refs: dict = refs) -> str:
            return _num((refs.get(kind) or {}).get(key))

        lines += [
            f"- eval-gen ({name} encoder, {metrics.get('rows_evaluated')} sources): source retrieval top-1 "
            f"**{_num(fid.get('retrieval_top1'))}** — real tile at {size} px {ref('real_at_bank_size')} "
            f"(ceiling), VAE reconstruction {ref('vae_reconstruction')} (autoencoder ceiling"
            + (f", PSNR {vae['psnr_db']:.1f} dB" if "psnr_db" in vae else "")
            + f"), shuffled "
            f"{ref('shuffled_conditioning')}, chance {_num(fid.get('retrieval_chance'))}; conditioning fidelity "
            f"{_num(fid['fidelity'])} (real at {size} px {ref('real_at_bank_size', 'fidelity')}, random real "
            f"pairs {_num(fid['random_pairs'])}); precision / recall {_num(views.get('precision'))} / "
            f"{_num(views.get('recall'))} (two real samples {_num(real.get('precision'))} / "
            f"{_num(real.get('recall'))}); Fréchet distance views↔sources {_num(fd['views_vs_sources'])} "
            f"against the real↔real floor {_num(fd['real_vs_sources'])}"
            + (" — **below the floor: likely copies of the sources**" if fd.get("likely_copy") else "")
            + f"; [metrics]({link})",
            "",
        ]
        reading = generator_reading(m)
        lines += [f"  {reading}", ""] if reading else []
    return lines


def coverage_section(out: Path) -> list[str]:
    """What round 2 actually learned from (OUT/gate/gate.json): coverage per bank and the gate's verdict."""
    path = out / "gate" / "gate.json"
    if not path.is_file():
        return []
    gate = read_json(path, "quality gate record")
    lines = ["## What round 2 saw", ""]
    for kind, cov in gate.get("coverage", {}).items():
        what = "a generated view" if kind == "views" else "an interpolation sample (disentanglement task)"
        lines.append(
            f"- **{cov['per_epoch']:.0%}** of the {cov['tiles']} training tiles per epoch saw {what}: "
            f"{cov['with_row']} have a row in the {kind} bank ({cov['share_with_row']:.0%})"
            + (f", times p = {cov['p']:g}" if kind == "views" else "")
            + "; the rest trained on real "
            "tiles only."
        )
    config = gate.get("config", {})
    verdict = (
        "passed"
        if gate.get("passed")
        else ("**failed, overridden** (quality_gate.refuse=false): " if gate.get("overridden") else "failed: ")
        + "; ".join(gate.get("reasons", []))
    )
    return lines + [
        f"- Quality gate (retrieval ≥ {config.get('min_retrieval')}, coverage ≥ "
        f"{config.get('min_coverage')}): {verdict}",
        "",
    ]


GRID_CAPTIONS = {
    "views": "first column the real source tile, then its generated views.",
    "interpolate": "first column the primary tile, second the secondary tile (`2nd`), then views generated from "
    "SLERP of their embeddings, each labelled with its α (the primary's weight).",
}


def generation_section(out: Path, report_dir: Path, banks: list[str]) -> list[str]:
    """Grid pictures (copied beside the report) and the eval-gen headline numbers of each bank."""
    lines = ["## Generated views", ""]
    for kind in banks:
        bank = out / f"bank_{kind}"
        attrs = _read_yaml(bank / "config.yaml")
        caption = GRID_CAPTIONS.get(kind, GRID_CAPTIONS["views"])
        if (bank / "grid.png").is_file():
            shutil.copy2(bank / "grid.png", report_dir / f"grid_{kind}.png")
            lines += [
                f"**{kind}** bank ({attrs.get('n_views')} views per source, {attrs.get('max_sources') or 'all'} "
                f"sources, {attrs.get('sampler', {}).get('sampler')} {attrs.get('sampler', {}).get('steps')} "
                f"steps, guidance {attrs.get('sampler', {}).get('guidance_scale')}): {caption}",
                "",
                f"![{kind}](grid_{kind}.png)",
                "",
            ]
        metrics_path = bank / "eval" / "metrics.json"
        if metrics_path.is_file():
            lines += generator_numbers(
                read_json(metrics_path, "generation metrics"), Path("..") / metrics_path.relative_to(out)
            )
    return lines


def timings_section(out: Path) -> list[str]:
    """Wall seconds of the run that produced each stage's output (status.json)."""
    status = {name: entry for name, entry in read_status(out).items() if name != "report"}
    total = sum(entry.get("seconds") or 0.0 for entry in status.values())
    lines = ["## Stage timings", "", "| stage | wall s | status this run |", "|---|---|---|"]
    lines += [f"| {name} | {_num(entry.get('seconds'))} | {entry.get('status')} |" for name, entry in status.items()]
    return lines + [f"| total (stages before the report) | {total:.0f} | |", ""]


def _mean_logged(path: Path, key: str) -> float | None:
    """Mean of `key` over the logged steps of a train-ssl metrics.jsonl (None when never logged)."""
    if not path.is_file():
        return None
    values = [entry[key] for entry in map(json.loads, filter(None, path.read_text().splitlines())) if key in entry]
    return float(np.mean(values)) if values else None


def describe_rounds(out: Path) -> str:
    """What the two encoders are, from the resolved configs the SSL runs saved."""
    r1, r2 = _read_yaml(out / "ssl_round1" / "config.yaml"), _read_yaml(out / "ssl_round2" / "config.yaml")
    train, gen, loss = r1.get("train", {}), r2.get("genaug", {}), r2.get("loss", {})
    budget = f"{train['max_steps']} steps" if train.get("max_steps") else f"{train.get('epochs')} epochs"
    added = []
    if gen.get("bank"):
        added.append(
            f"generated views from `{gen['bank']}` (policy {gen.get('policy')}, p = {gen.get('p')}"
            + (", adaptive noise" if gen.get("adaptive_noise") else "")
            + ")"
        )
    if (gen.get("disentangle") or {}).get("bank"):
        share = _mean_logged(out / "ssl_round2" / "metrics.jsonl", "disentangle_share")
        added.append(
            f"the disentanglement task on `{gen['disentangle']['bank']}` (weight "
            f"{gen['disentangle']['weight']}; one more student and teacher pass, on the samples that have "
            "an interpolation only"
            + ("" if share is None else f": {share:.0%} of each batch on average, the task's cost per step")
            + ")"
        )
    if loss.get("quality_weighting"):
        added.append(f"quality-weighted pairs scored by `{loss.get('quality_scorer')}`")
    return (
        f"Baseline = round 1: {r1.get('method')} on real tiles only ({r1.get('backbone', {}).get('name')}, "
        f"{budget} × batch {train.get('batch_size')}, seed {train.get('seed')}). Gen-SIS = round 2, trained "
        f"**from scratch** with the same config, {budget}, batch and seed, plus "
        f"{'; '.join(added) or 'nothing (no generative switch: a replicate of the baseline)'}. "
        "The budget held equal is optimizer steps × batch."
    )


def paired_section(paired: list[dict]) -> list[str]:
    """The paired test of each encoder against the baseline on the same test samples (when scores exist)."""
    if not paired:
        return []
    return [
        "### Paired comparison with the baseline (same test samples)",
        "",
        paired[0]["method"] + "; DeLong's test on the seed-mean scores for binary AUROC.",
        "",
        paired_table(paired),
        "",
    ]


def write_gensis_report(out: str | Path, banks: list[str]) -> Path:
    """OUT/report/report.md (+ comparison.png, grid_*.png, results.json) from a finished Gen-SIS run."""
    out = Path(out)
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(out / "bench" / "results.json")
    shutil.copy2(out / "bench" / "results.json", report_dir / "results.json")
    present = {r["encoder"] for r in results}
    encoders = [e for e in ("baseline", "gensis", "init") if e in present]
    rows = comparison_rows(results, encoders, "baseline")
    paired = compare_results(results, "baseline")
    plot_comparison(results, encoders, LABELS, report_dir / "comparison.png")
    seeds = sorted({s for r in results for s in r.get("seeds", [])})
    lines = [
        f"# Gen-SIS: baseline vs generative-augmented encoder ({out})",
        "",
        describe_rounds(out),
        "",
        *coverage_section(out),
        summary_sentence(rows, "gensis", LABELS["gensis"]),
        "",
        learned_sentence(rows),
        "",
        "## Benchmark",
        "",
        f"Cells: mean ± sd over probe / MIL-head seeds {seeds} [95% interval]. {interval_note(results)} "
        "Each encoder comes from one pretraining seed, so neither the sd nor the interval contains "
        "pretraining variance; a difference is called only where both the two intervals and the two ranges over "
        "probe seeds are disjoint (on 8 test slides a bootstrap interval can be narrow while seeds disagree)."
        + (
            " Few-shot intervals reflect episode sampling on one test set, so they are far narrower than the "
            "bootstrap ones and a disjoint few-shot interval is weak evidence."
            if any(r["probe"].startswith("few_shot") for r in results)
            else ""
        ),
        "",
        comparison_table(rows, encoders, "baseline", LABELS),
        "![comparison](comparison.png)",
        "",
        *paired_section(paired),
        *generation_section(out, report_dir, banks),
        *timings_section(out),
        "## Files",
        "",
        f"- resolved config: `{out / 'config.yaml'}`; stage record: `{out / 'status.json'}`",
        f"- encoders: `{out / 'ssl_round1' / 'model'}` (baseline), `{out / 'ssl_round2' / 'model'}` (Gen-SIS), "
        f"`{out / 'ssl_init' / 'model'}` (round 1 at step 0, when benched)",
        f"- benchmark: `{out / 'bench' / 'results.md'}` and its plots; every number: `results.json` here",
        "",
    ]
    (report_dir / "report.md").write_text("\n".join(lines))
    return report_dir / "report.md"


def report_stage(out: Path, banks: list[str], stage_names: list[str]) -> Stage:
    """The report as the last stage of `pathgen gensis`: run folder `out`, the bank kinds it made."""
    inputs = tuple(name for name in ("bench", "eval_gen") if name in stage_names)
    return Stage(
        "report",
        out / "report",
        {"banks": banks},
        lambda: (out / "report" / "report.md").is_file(),
        lambda: write_gensis_report(out, banks),
        inputs,
    )
