"""How a run reports: Python `logging` for messages, a progress bar only on a terminal.

Schedulers (Slurm, nohup, CI) send stderr to a file, where a tqdm bar becomes one long line of
carriage returns. So a training run draws a bar only when stderr is a terminal; otherwise it logs
one plain line every `log_every` steps (step, loss, learning rate, throughput, time left). Every
message goes through the ``pathgen`` logger, which `setup_logging` points at stderr at the level
the CLI's ``--quiet`` / ``--verbose`` ask for; ranks other than 0 only log warnings and errors.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

from tqdm import tqdm

from pathgen.atomic import write_text_atomic

LOGGER_NAME = "pathgen"


def setup_logging(verbosity: int = 0, rank: int = 0) -> logging.Logger:
    """Send the ``pathgen`` logger to stderr: -1 (--quiet) warnings only, 0 info, 1 (--verbose) debug.

    Ranks other than 0 log warnings and errors only, so a torchrun job prints each message once.
    """
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 0 else logging.WARNING)
    if rank != 0:
        level = max(level, logging.WARNING)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(handler, "_pathgen", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s pathgen %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler._pathgen = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    """The logger every pathgen message goes through."""
    return logging.getLogger(LOGGER_NAME)


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (where a progress bar can redraw itself)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class ProgressReporter:
    """Step progress of one training run: a tqdm bar on a terminal, else a log line per report.

    `enabled` is the run's `progress` setting and whether this is the rank that prints.
    """

    def __init__(self, total_steps: int, start_step: int, enabled: bool, use_bar: bool | None = None):
        self.total, self.start_step = total_steps, start_step
        self.started = time.perf_counter()
        use_bar = stderr_is_terminal() if use_bar is None else use_bar
        self.bar = (
            tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
            if enabled and use_bar
            else None
        )
        self.enabled = enabled

    def advance(self) -> None:
        """One optimizer step done."""
        if self.bar is not None:
            self.bar.update(1)

    def report(self, record: dict) -> None:
        """Show a metrics record (step, loss, lr, images_per_s, ...): on the bar, or as one log line."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        elif self.enabled:
            get_logger().info(format_progress(record, self.total, self.eta_seconds(record["step"])))

    def eta_seconds(self, step: int) -> float | None:
        """Time left at the mean pace of the steps this process has run, or None before the first."""
        done = step - self.start_step
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * (self.total - step)

    def close(self) -> None:
        """Close the bar (if any)."""
        if self.bar is not None:
            self.bar.close()


def format_progress(record: dict, total_steps: int, eta_seconds: float | None) -> str:
    """One plain progress line, e.g. ``step 20/300 loss 1.2345 lr 1.00e-04 512.0 img/s ETA 0:05:12``."""
    eta = "?" if eta_seconds is None else str(timedelta(seconds=round(eta_seconds)))
    return (
        f"step {record['step']}/{total_steps} loss {record['loss']:.4f} lr {record['lr']:.2e} "
        f"{record.get('images_per_s', 0.0):.1f} img/s ETA {eta}"
    )


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep the records of a JSONL metrics log up to `last_step` (a resumed run logs the later steps
    again); a line a kill cut short is dropped too. Rewritten atomically; returns the records kept."""
    if not path.is_file():
        return 0
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= last_step:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(kept)
