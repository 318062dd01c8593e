"""Optimisers of the MIL papers' own training recipes: AdamW (eva), Adam (CLAM), RAdam + Lookahead (TransMIL).

- "adamw": torch.optim.AdamW, eva's ABMIL recipe (lr 1e-3, torch's weight decay 0.01).
- "adam": torch.optim.Adam with L2 weight decay, CLAM's (mahmoodlab/CLAM ``utils/utils.py``
  ``get_optim``: Adam, lr 1e-4, weight_decay = ``--reg`` 1e-5).
- "radam_lookahead": Lookahead around RAdam, TransMIL's ``opt: lookahead_radam``, lr 2e-4,
  weight decay 1e-5 (szc19990412/TransMIL ``Camelyon/TransMIL.yaml``); Lookahead with that
  repository's defaults k = 6, α = 0.5 (``MyOptimizer/lookahead.py``): Zhang, Lucas, Hinton & Ba,
  "Lookahead Optimizer: k steps forward, 1 step back" (NeurIPS 2019).
"""

from __future__ import annotations

import torch

MIL_OPTIMIZERS = ("adamw", "adam", "radam_lookahead")


class Lookahead(torch.optim.Optimizer):
    """Every `k` steps of the inner ("fast") optimiser, slow ← slow + α (fast − slow) and fast ← slow.

    Slow weights start as a copy of the parameters. The wrapper shares the inner optimiser's
    param groups, so a scheduler or `zero_grad` acting on it acts on the inner one.
    """

    def __init__(self, inner: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if k < 1 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead needs k ≥ 1 and 0 ≤ alpha ≤ 1, got k={k}, alpha={alpha}")
        self.inner, self.k, self.alpha, self.fast_steps = inner, k, alpha, 0
        self.param_groups = inner.param_groups
        self.defaults = inner.defaults
        self.state = inner.state
        self.slow = [[p.detach().clone() for p in group["params"]] for group in self.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients (the inner optimiser's)."""
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 -- torch's Optimizer.step signature
        """One inner step; every k-th also pulls the slow weights towards the fast ones and resets them."""
        loss = self.inner.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            for group, slow_group in zip(self.param_groups, self.slow):
                for param, slow in zip(group["params"], slow_group):
                    slow.add_(param - slow, alpha=self.alpha)
                    param.copy_(slow)
        return loss


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups as TransMIL's timm-style factory makes them: no decay on biases and 1-D weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_mil_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser `name` (one of `MIL_OPTIMIZERS`) over `model`'s parameters.

    "radam_lookahead" follows TransMIL's code: RAdam with decoupled weight decay (its RAdam
    subtracts lr·wd·θ from the weights), none on biases and 1-D weights, inside Lookahead(k 6, α 0.5).
    """
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "radam_lookahead":
        inner = torch.optim.RAdam(decay_groups(model, weight_decay), lr=lr, decoupled_weight_decay=True)
        return Lookahead(inner)
    raise ValueError(f"MILConfig.optimizer must be one of {MIL_OPTIMIZERS}, got {name!r}")
