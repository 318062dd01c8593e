"""Where training is (`StepInfo`) and the per-step schedules over it (DINO-style, per iteration)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class StepInfo:
    """Where training is: used for schedules inside methods (teacher temperature, EMA momentum)."""

    step: int
    total_steps: int
    epoch: float  # fractional epochs done (step / steps_per_epoch)

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.total_steps))


def warmup_cosine(
    step: int, total_steps: int, peak: float, final: float, warmup_steps: int = 0, start: float = 0.0
) -> float:
    """Linear warm-up from `start` to `peak` over `warmup_steps`, then cosine from `peak` to `final`."""
    if step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * progress))
