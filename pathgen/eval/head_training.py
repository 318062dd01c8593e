"""What every trained head shares (linear probe, MIL): its loss and the best-checkpoint / early-stopping
bookkeeping, so the MIL models and the probes train by one rule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class CheckpointSelector:
    """Keeps the head with the best validation score and counts checks without improvement.

    Mirrors Lightning's ModelCheckpoint(mode="max") + EarlyStopping(min_delta=0) as eva uses
    them: only a strictly higher score is an improvement, so ties keep the earlier step.
    """

    patience: int | None
    best_score: float = -math.inf
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    checks_without_improvement: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)

    def update(self, step: int, score: float, head: torch.nn.Module) -> bool:
        """Record one validation check; True when training should stop."""
        self.history.append((step, score))
        if score > self.best_score:
            self.best_score, self.best_step = score, step
            self.best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            self.checks_without_improvement = 0
        else:
            self.checks_without_improvement += 1
        return self.patience is not None and self.checks_without_improvement >= self.patience


def head_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on one logit, or cross-entropy on C logits."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels)
