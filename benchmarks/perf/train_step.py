"""Images/s and model FLOP utilisation of one DINO training step, against the bare backbone, in one run.

The step is pathgen's own: the method is `build_ssl_method(load_config(SSLConfig, --config))`
(default configs/ssl/dino_vits16.yaml: ViT-S/16, 2 × 224 + 8 × 96 crops, 65,536-dim head) and
the step is `Trainer._train_step` (autocast, forward, backward, per-tensor gradient clipping, the
frozen last layer's gradients dropped, AdamW, teacher EMA, the loss check), on random views of the
configured sizes already on the device, at the middle of a run (schedules in steady state). The
baseline is the bare backbone's forward + backward on the same global crops (no heads, no
teacher, no local crops, no optimizer), so DINO/backbone shows what everything else costs.

FLOPs of one step are counted once with torch.utils.flop_counter.FlopCounterMode (matmuls,
convolutions, attention): the student's forward + backward on every crop and the teacher's
forward on the global crops. Achieved FLOP/s = FLOPs / step time; MFU = that / --peak-tflops.

    python benchmarks/perf/train_step.py                       # CPU: fp32, batch 8
    python benchmarks/perf/train_step.py --batch-size 64       # CUDA: fp32, bf16, bf16 + compile
    python benchmarks/perf/train_step.py --modes bf16 --peak-tflops 989 backbone.drop_path_rate=0

Times are the best of --repeats windows of --steps steps after --warmup steps; the baseline is
measured in the same run, interleaved, so the ratio holds on a shared machine while absolute
numbers move with whatever else runs there.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from pathgen.config import load_config
from pathgen.models.backbone import create_backbone
from pathgen.schedules import StepInfo
from pathgen.stages.train_ssl import SSLConfig, build_ssl_method
from pathgen.train import Trainer

REPO = Path(__file__).resolve().parents[2]
H100_SXM_BF16_DENSE_TFLOPS = 989.0


@dataclass(frozen=True)
class Mode:
    """A numeric set-up of the step: autocast precision and whether the model is compiled."""

    name: str
    precision: str  # fp32 | bf16 (TrainConfig.precision)
    compile: bool


MODES = {
    "fp32": Mode("fp32", "fp32", False),
    "bf16": Mode("bf16", "bf16", False),
    "bf16-compile": Mode("bf16+compile", "bf16", True),
}


@dataclass
class Row:
    """One measured step kind in one mode."""

    mode: str
    step: str
    batch: int
    seconds: float  # best seconds per step
    flops: int  # per step

    @property
    def images_per_s(self) -> float:
        return self.batch / self.seconds


# ------------------------------------------------------------------------------------- FLOPs
Shape = tuple[int, ...]


def _cpu_sdpa(query: Shape, key: Shape, value: Shape, *args: object, **kwargs: object) -> int:
    """FLOPs of CPU flash attention forward (FlopCounterMode passes the tensors' shapes)."""
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out: Shape, query: Shape, key: Shape, value: Shape, *args: object, **kwargs: object) -> int:
    """FLOPs of CPU flash attention backward."""
    return sdpa_backward_flop_count(grad_out, query, key, value)


#: FlopCounterMode knows the CUDA attention kernels but not the CPU one, which it would count as 0
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def count_flops(run: Callable[[], None]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls, convolutions and attention that `run` executes."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        run()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------- steps
def random_views(cfg: SSLConfig, batch: int, device: torch.device) -> list[torch.Tensor]:
    """Normalised-looking multi-crop views: n_global (B, 3, G, G) then n_local (B, 3, L, L)."""
    aug = cfg.augment
    sizes = [aug.global_size] * aug.n_global + [aug.local_size] * (aug.n_local or 0)
    return [torch.randn(batch, 3, size, size, device=device) for size in sizes]


def build_trainer(cfg: SSLConfig, mode: Mode, batch: int, device: str, run_dir: Path) -> Trainer:
    """pathgen's Trainer around the configured method, placed in the middle of a long run."""
    train = replace(
        cfg.train,
        batch_size=batch,
        grad_accum=1,
        precision=mode.precision,
        compile=mode.compile,
        device=device,
        progress=False,
    )
    method = build_ssl_method(replace(cfg, train=train))
    trainer = Trainer(train, method, range(batch * 10_000), run_dir)
    trainer.step = trainer.total_steps // 2
    return trainer


def backbone_step(backbone: nn.Module, images: torch.Tensor, dtype: torch.dtype) -> Callable[[], None]:
    """Forward + backward of a bare backbone on `images` (gradients dropped after each step)."""
    autocast = nullcontext if dtype == torch.float32 else lambda: torch.autocast(images.device.type, dtype=dtype)

    def step() -> None:
        with autocast():
            loss = backbone(images).float().square().mean()
        loss.backward()
        backbone.zero_grad(set_to_none=True)

    return step


def seconds_per_step(step: Callable[[], None], n_steps: int, device: torch.device) -> float:
    """Wall seconds per call of `step`, averaged over `n_steps` calls (device work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(n_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / n_steps


def dino_flops(trainer: Trainer, views: list[torch.Tensor]) -> int:
    """FLOPs of one step: student forward + backward on all crops, teacher forward on the globals."""
    method = trainer.model

    def run() -> None:
        method(views, StepInfo(0, 1, 0.0))["loss"].backward()

    flops = count_flops(run)
    method.zero_grad(set_to_none=True)
    return flops


def measure_mode(cfg: SSLConfig, mode: Mode, args: argparse.Namespace, run_dir: Path) -> list[Row]:
    """Best seconds per step of the DINO Trainer step and of the backbone baseline in one mode."""
    trainer = build_trainer(cfg, mode, args.batch_size, args.device, run_dir)
    device = trainer.dist.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    views = random_views(cfg, args.batch_size, device)
    globals_batch = torch.cat(views[: cfg.augment.n_global])
    backbone = create_backbone(cfg.backbone)[0].to(device).train()
    baseline = backbone_step(torch.compile(backbone) if mode.compile else backbone, globals_batch, trainer.dtype)

    def dino() -> None:
        trainer._train_step([views])  # the Trainer's own step, not a copy of it

    flops = {
        "dino": dino_flops(trainer, views),
        "backbone": count_flops(backbone_step(backbone, globals_batch, torch.float32)),
    }
    steps = {"dino": dino, "backbone": baseline}
    for step in steps.values():
        seconds_per_step(step, args.warmup, device)
    best = {name: float("inf") for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            best[name] = min(best[name], seconds_per_step(step, args.steps, device))
    if device.type == "cuda":
        print(f"  {mode.name}: peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB", flush=True)
    labels = {"backbone": f"backbone fwd+bwd ({cfg.augment.n_global} globals)", "dino": "DINO Trainer step"}
    return [Row(mode.name, labels[name], args.batch_size, best[name], flops[name]) for name in ("backbone", "dino")]


# -------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the SSL config")
    parser.add_argument("--config", type=Path, default=REPO / "configs/ssl/dino_vits16.yaml")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, help="images per step (default 8 on CPU, the config's on CUDA)")
    parser.add_argument(
        "--modes", nargs="+", choices=sorted(MODES), help="default fp32 on CPU; fp32, bf16 and bf16-compile on CUDA"
    )
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 1 on CPU, 5 on CUDA)")
    parser.add_argument("--steps", type=int, help="steps per timed window (default 1 on CPU, 20 on CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows; the best is kept")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help=f"device peak for MFU (default {H100_SXM_BF16_DENSE_TFLOPS:g} on CUDA: H100 SXM dense bf16; none on CPU)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args()


def fill_device_defaults(args: argparse.Namespace, cfg: SSLConfig) -> None:
    """CPU and CUDA get different batch sizes, modes, step counts and peak."""
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.device = "cuda" if cuda else "cpu"
    if args.batch_size is None:
        args.batch_size = cfg.train.batch_size if cuda else 8
    if args.modes is None:
        args.modes = ["fp32", "bf16", "bf16-compile"] if cuda else ["fp32"]
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.steps = args.steps or (20 if cuda else 1)
    if args.peak_tflops is None and cuda:
        args.peak_tflops = H100_SXM_BF16_DENSE_TFLOPS


def print_table(rows: list[Row], peak_tflops: float | None) -> None:
    print(
        f"\n{'mode':<14}{'step':<32}{'batch':>6}{'images/s':>10}{'ms/step':>10}{'GFLOP/step':>12}"
        f"{'GFLOP/s':>11}{'MFU':>8}"
    )
    for row in rows:
        achieved = row.flops / row.seconds
        mfu = f"{100 * achieved / (peak_tflops * 1e12):.1f}%" if peak_tflops else "—"
        print(
            f"{row.mode:<14}{row.step:<32}{row.batch:>6}{row.images_per_s:>10.2f}{1000 * row.seconds:>10.1f}"
            f"{row.flops / 1e9:>12.1f}{achieved / 1e9:>11.1f}{mfu:>8}"
        )
    for backbone, dino in zip(rows[::2], rows[1::2]):
        print(f"{dino.mode}: DINO step / bare backbone images/s = {dino.images_per_s / backbone.images_per_s:.2f}")


def device_line(args: argparse.Namespace) -> str:
    """What ran the steps, for the header."""
    if args.device == "cuda":
        return (
            f"{torch.cuda.get_device_name()} ({torch.cuda.device_count()} visible), peak {args.peak_tflops:g} TFLOP/s"
        )
    return f"CPU, {torch.get_num_threads()} torch threads (machine possibly shared with other jobs)"


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(SSLConfig, args.config, args.overrides)
    fill_device_defaults(args, cfg)
    print(
        f"{cfg.method} {cfg.backbone.name}, crops {cfg.augment.n_global}×{cfg.augment.global_size} + "
        f"{cfg.augment.n_local or 0}×{cfg.augment.local_size}, batch {args.batch_size}, {args.config.name}; "
        f"{device_line(args)}; best of {args.repeats} × {args.steps} steps after {args.warmup} warm-up",
        flush=True,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="pathgen_train_step_") as run_dir:
        for name in args.modes:
            rows += measure_mode(cfg, MODES[name], args, Path(run_dir))
            print(f"  measured {name}", flush=True)
            gc.collect()
            torch._dynamo.reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print_table(rows, args.peak_tflops)


if __name__ == "__main__":
    main()
