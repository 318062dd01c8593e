"""The Gen-SIS demo config at a test budget, as `key=value` words (shared by the pipeline and ablation tests):
3 steps per training stage on 32-px crops, 6 bank sources with 2 sampler steps, a tiny benchmark."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "configs" / "genaug" / "gensis_demo.yaml"
SSL_TINY = [
    "backbone.img_size=32",
    "augment.global_size=32",
    "augment.local_size=16",
    "train.max_steps=3",
    "train.batch_size=8",
    "train.num_workers=0",
    "train.log_every=1",
    "train.checkpoint_every=1",
]
TRAIN_TINY = ["train.max_steps=3", "train.batch_size=8", "train.log_every=1"]
BANKS_TINY = ["n_views=2", "max_sources=6", "sampler.steps=2", "batch_size=8", "grid_rows=3"]
BENCH_TINY = [
    "n_boot=20",
    "pcam.probes.linear.max_steps=10",
    "pcam.probes.linear.val_every_steps=5",
    "pcam.probes.few_shot.episodes=2",
    "camelyon16_small.tiling.target_mpp=1.0",
    "camelyon16_small.tiling.tile_size_px=64",
    "camelyon16_small.mil.abmil.max_epochs=2",
    "camelyon16_small.mil.mean_pool.max_epochs=2",
]


def tiny_words(tiles: Path, out: Path) -> list[str]:
    """Overrides that shrink configs/genaug/gensis_demo.yaml to a test run into `out` (folders quoted as
    JSON strings, which YAML reads back verbatim whatever '#', ':' or spaces they hold)."""
    return [
        f"tiles={json.dumps([str(tiles)])}",
        f"out={json.dumps(str(out))}",
        "progress=false",
        f"ssl.overrides={json.dumps(SSL_TINY)}",
        f"vae.overrides={json.dumps([*TRAIN_TINY, 'scaling_tiles=16'])}",
        f"ldm.overrides={json.dumps(TRAIN_TINY)}",
        f"banks.overrides={json.dumps(BANKS_TINY)}",
        "banks.views.overrides=[]",
        "banks.interpolate.overrides=[]",
        "eval_gen.max_sources=6",
        "eval_gen.n_bootstrap=0",
        "bench.seeds=[0]",
        f"bench.overrides={json.dumps(BENCH_TINY)}",
        "bench.synthetic.pcam=[16, 8, 8]",
        "bench.synthetic.camelyon16=[4, 2]",
        "bench.synthetic.slide_size=[4096, 3072]",
    ]
