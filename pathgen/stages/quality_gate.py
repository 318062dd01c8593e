"""The quality gate before Gen-SIS round 2: is the generator good enough, and does the bank reach
enough of the training samples, to be worth a second SSL round?

Two numbers decide, both written to `OUT/gate/gate.json` (which the report leads with):

- **retrieval**: the views bank's source retrieval top-1 in the conditioning encoder's space
  (`pathgen eval-gen`): the share of views that pick out their own source among all evaluated
  sources. Chance is 1 / N; a real tile at the bank's size is the ceiling.
- **coverage**: the share of round 2's training samples that see a generated view in an epoch:
  (training tiles with a finished bank row / training tiles) × genaug.p, since the view policy
  flips one coin with probability p per sample and a tile without a row stays all-real
  (pathgen.genaug.sources). For the interpolation bank it is the share of training tiles with a
  finished row and a secondary tile (each of them gets an interpolation sample every time). Both are
  computed from the bank and the tile folders with round 2's tissue filter, exactly the tiles
  train-ssl iterates over; nothing is sampled.

Below a configured threshold `pathgen gensis` refuses to start round 2 with one line naming the
numbers, unless `quality_gate.refuse=false` (then the report says the gate was overridden).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pathgen.atomic import read_json, write_json_atomic
from pathgen.data.tiles import TileDataset
from pathgen.diffusion.bank import ViewBank
from pathgen.stages.steps import PipelineError

GATE_FILE = "gate.json"


@dataclass
class GateConfig:
    """Thresholds of the gate before round 2; `refuse: false` records the verdict but goes on."""

    refuse: bool = True
    min_retrieval: float = 0.2  # views bank, conditioning encoder, top-1 among eval_gen.max_sources sources
    min_coverage: float = 0.5  # share of training samples per epoch that see a generated view


class GateRefused(PipelineError):
    """Round 2 was refused: the views bank is below the gate's thresholds."""


def bank_coverage(bank_dir: str | Path, tiles: list[str], min_tissue: float, p: float = 1.0) -> dict:
    """How much of the training set (tiles with tissue ≥ min_tissue) a bank reaches, per epoch.

    Returns {"tiles", "with_row", "share_with_row", "p", "per_epoch"}: per_epoch = share_with_row × p.
    In an interpolation bank a row counts only with its secondary tile (what the task needs).
    """
    dataset, bank = TileDataset(tiles, min_tissue=min_tissue), ViewBank(bank_dir, require_complete=False)
    done = bank.group["done"][:]
    secondary = bank.group["secondary_store_id"][:] >= 0
    needs_secondary = bank.attrs.get("mode") == "interpolate"
    rows = [bank.row_of(dataset.key(i)) for i in range(len(dataset))]
    reached = sum(1 for row in rows if row is not None and done[row] and (secondary[row] or not needs_secondary))
    share = reached / len(dataset)
    return {
        "bank": str(bank_dir),
        "mode": bank.attrs.get("mode"),
        "tiles": len(dataset),
        "with_row": reached,
        "share_with_row": share,
        "p": float(p),
        "per_epoch": share * float(p),
    }


def views_retrieval(bank_dir: str | Path) -> dict:
    """The views bank's retrieval top-1 and chance (conditioning encoder) from BANK/eval/metrics.json."""
    path = Path(bank_dir) / "eval" / "metrics.json"
    try:
        metrics = read_json(path, "generation metrics")
        conditioning = next(m for m in metrics["encoders"].values() if m.get("conditioning"))
        return {
            "retrieval_top1": conditioning["fidelity"]["retrieval_top1"],
            "retrieval_chance": conditioning["fidelity"]["retrieval_chance"],
            "metrics": str(path),
        }
    except (OSError, json.JSONDecodeError, KeyError, StopIteration) as err:
        raise PipelineError(
            f"{path}: no conditioning-encoder retrieval to gate round 2 on ({err}); run the eval_gen stage first"
        ) from err


def verdict(cfg: GateConfig, retrieval: dict, coverage: dict) -> list[str]:
    """The reasons the gate refuses (empty: it passes)."""
    reasons = []
    if retrieval["retrieval_top1"] < cfg.min_retrieval:
        reasons.append(
            f"views retrieve their source at {retrieval['retrieval_top1']:.3f} < quality_gate.min_retrieval "
            f"{cfg.min_retrieval} (chance {retrieval['retrieval_chance']:.3f})"
        )
    if coverage["per_epoch"] < cfg.min_coverage:
        reasons.append(
            f"{coverage['per_epoch']:.1%} of training samples per epoch see a generated view < "
            f"quality_gate.min_coverage {cfg.min_coverage:.0%}"
        )
    return reasons


def run_gate(
    cfg: GateConfig,
    out_dir: Path,
    views_bank: Path | None,
    interpolation_bank: Path | None,
    tiles: list[str],
    min_tissue: float,
    p: float,
) -> dict:
    """Measure, write out_dir/gate.json (temp file, then rename) and refuse round 2 when below the thresholds.

    Round 2 reads the views bank when `views_bank` is given (its eval-gen metrics must exist) and the
    interpolation bank when `interpolation_bank` is; without a views bank only coverage is recorded."""
    record: dict = {"config": asdict(cfg), "coverage": {}}
    reasons: list[str] = []
    if views_bank is not None:
        record["coverage"]["views"] = bank_coverage(views_bank, tiles, min_tissue, p)
        record["retrieval"] = views_retrieval(views_bank)
        reasons = verdict(cfg, record["retrieval"], record["coverage"]["views"])
    if interpolation_bank is not None:
        record["coverage"]["interpolate"] = bank_coverage(interpolation_bank, tiles, min_tissue)
    record.update({"passed": not reasons, "reasons": reasons, "overridden": bool(reasons) and not cfg.refuse})
    write_json_atomic(out_dir / GATE_FILE, record, indent=2)
    if reasons and cfg.refuse:
        raise GateRefused(
            f"round 2 refused by the quality gate: {'; '.join(reasons)} ({out_dir / GATE_FILE}); "
            "improve the generator, or set quality_gate.refuse=false to train round 2 anyway"
        )
    return record
