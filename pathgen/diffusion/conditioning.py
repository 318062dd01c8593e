"""SSL-embedding conditioning of the latent diffusion model (Large-Image-Diffusion, Graikos et al., CVPR 2024).

The embedding is L2-normalised and linearly projected to `n_tokens` cross-attention tokens. The
unconditional (classifier-free guidance) input is an all-zero embedding, so its context is the
projection bias: LID's dataset zeroes the SSL feature with probability 0.1 and its PatchEmbedder
normalises and projects it. Optionally the embedding is first standardised with the training
embeddings' per-dimension mean and std, as RCG does with its representations (Li et al.,
"Return of Unconditional Generation", NeurIPS 2024): SSL embeddings often share one dominant
direction (a small encoder's tiles: cosine 0.998 between random pairs), which the unit sphere keeps and
which leaves the projection nearly the same input for every tile. `slerp` mixes two embeddings on
the unit sphere (Gen-SIS interpolation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_PARALLEL_EPS = 1e-4  # |sin(angle)| below this: the vectors are (anti)parallel, slerp is undefined


def slerp(e1: Tensor, e2: Tensor, alpha: float | Tensor) -> Tensor:
    """Spherical interpolation of the L2-normalised embeddings, `alpha` the weight on `e1`.

    alpha = 1 gives e1/|e1|, alpha = 0 gives e2/|e2|, and every result has unit norm. Gen-SIS mixes
    teacher targets as alpha*T(v1) + (1-alpha)*T(v2), so alpha weights e1 the same way here. Rows whose
    vectors are (anti)parallel fall back to the normalised linear interpolation. Works on (D,) or (B, D);
    alpha may be a scalar or a (B,) tensor.
    """
    u1, u2 = F.normalize(e1.float(), dim=-1), F.normalize(e2.float(), dim=-1)
    alpha = torch.as_tensor(alpha, dtype=u1.dtype, device=u1.device)
    if alpha.ndim == 1 and u1.ndim == 2:
        alpha = alpha[:, None]
    cos = (u1 * u2).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < _PARALLEL_EPS
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (torch.sin(alpha * omega) * u1 + torch.sin((1 - alpha) * omega) * u2) / safe_sin
    linear = F.normalize(alpha * u1 + (1 - alpha) * u2, dim=-1)
    return torch.where(parallel, linear, spherical).to(e1.dtype)


class EmbeddingConditioner(nn.Module):
    """L2-normalise the SSL embedding, standardise it (when statistics are set) and normalise again,
    Linear(D -> n_tokens * context_dim), reshape to (B, n_tokens, context_dim). Any positive scale of
    an embedding gives the same context, standardised or not.

    A dropped (unconditional) sample uses an all-zero unit embedding, so its context is the projection
    bias (Large-Image-Diffusion's null conditioning). The statistics are buffers (mean 0, std 1 until
    `set_statistics`), saved with the weights.
    """

    def __init__(self, embed_dim: int, context_dim: int, n_tokens: int = 1):
        super().__init__()
        self.embed_dim, self.context_dim, self.n_tokens = embed_dim, context_dim, n_tokens
        self.proj = nn.Linear(embed_dim, n_tokens * context_dim)
        self.register_buffer("embedding_mean", torch.zeros(embed_dim))
        self.register_buffer("embedding_std", torch.ones(embed_dim))

    @torch.no_grad()
    def set_statistics(self, embeddings: Tensor, eps: float = 1e-6) -> None:
        """Standardise every later input with the per-dimension mean and std of (N, D) training embeddings,
        taken on the unit sphere so that raw embeddings and SLERP outputs (unit norm) are treated alike."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim or len(embeddings) < 2:
            raise ValueError(f"statistics need (N >= 2, {self.embed_dim}) embeddings, got {tuple(embeddings.shape)}")
        embeddings = F.normalize(embeddings.to(self.embedding_mean.device, torch.float64), dim=-1)
        self.embedding_mean.copy_(embeddings.mean(dim=0))
        self.embedding_std.copy_(embeddings.std(dim=0).clamp(min=eps))

    def forward(self, embeddings: Tensor, drop: Tensor | None = None) -> Tensor:
        """(B, D) embeddings -> (B, n_tokens, context_dim) context; rows where `drop` (bool (B,)) is True get null()."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"embeddings must be (B, {self.embed_dim}), got {tuple(embeddings.shape)}")
        unit = F.normalize(embeddings.float(), dim=-1)
        standardised = (unit - self.embedding_mean.float()) / self.embedding_std.float()
        unit = F.normalize(standardised.to(self.proj.weight.dtype), dim=-1)
        if drop is not None:
            unit = unit.masked_fill(drop.to(unit.device, torch.bool)[:, None], 0.0)
        return self.proj(unit).view(len(unit), self.n_tokens, self.context_dim)

    def null(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The unconditional context (the projection of a zero embedding: the bias), (B, n_tokens, context_dim)."""
        bias = self.proj.bias.view(1, self.n_tokens, self.context_dim)
        return bias.expand(batch_size, -1, -1).to(device=device or bias.device, dtype=dtype or bias.dtype)
