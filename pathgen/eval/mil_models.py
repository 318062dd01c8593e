"""Slide-level multiple-instance models over bags of frozen tile embeddings.

Every model takes a padded batch of bags ``x`` (B, N, D) and a boolean ``mask`` (B, N) that is
True on real instances, and returns a `MILOutput`: logits (B, n_logits) — one column for a
binary task (eva's head, trained with BCE), C columns otherwise — and, where the model has them,
per-instance attention weights (B, N) that sum to 1 over a bag's real instances and are 0 on
padding. Padded rows never reach a real output, so a bag scores the same alone or padded.

Models (`MIL_MODELS`):
    mean_pool  masked mean of the instances → Linear (the pooling baseline of Ilse et al. 2018)
    abmil      gated-attention MIL, Ilse, Tomczak & Welling, "Attention-based Deep Multiple
               Instance Learning" (ICML 2018), sized as eva's ``abmil.py`` (kaiko-ai/eva)
    transmil   Shao et al., "TransMIL: Transformer based Correlated Multiple Instance Learning
               for Whole Slide Image Classification" (NeurIPS 2021)
    clam_sb    Lu et al., "Data-efficient and weakly supervised computational pathology on
               whole-slide images" (Nature Biomedical Engineering 2021), single attention branch
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pathgen.eval.head_training import head_loss


class MILOutput(NamedTuple):
    """logits (B, n_logits); attention (B, N) or None; embeddings (B, N, H) where a loss needs them."""

    logits: torch.Tensor
    attention: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


def n_logits(n_classes: int) -> int:
    """One logit for two classes (sigmoid + BCE, as eva), C otherwise (softmax + cross-entropy)."""
    return 1 if n_classes == 2 else n_classes


class MILModel(nn.Module):
    """Base class: `forward(x, mask) -> MILOutput` and a training loss (the bag loss by default)."""

    def loss(self, output: MILOutput, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Training objective for one batch; models with auxiliary terms override it."""
        return head_loss(output.logits, labels)


class GatedAttention(nn.Module):
    """Gated attention pooling weights: a_i ∝ exp(w · (tanh(V h_i) ⊙ σ(U h_i))) (Ilse et al. 2018, eq. 9)."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.tanh_branch = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.Tanh(), nn.Dropout(dropout))
        self.gate_branch = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden_dim, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, H) embeddings → (B, N) softmax weights over real instances (0 on padding)."""
        logits = self.score(self.tanh_branch(h) * self.gate_branch(h)).squeeze(-1)  # (B, N)
        return logits.masked_fill(~mask, -math.inf).softmax(dim=1)


def attention_pool(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i a_i h_i: (B, N, H) and (B, N) → (B, H)."""
    return (weights.unsqueeze(1) @ h).squeeze(1)


class MeanPoolMIL(MILModel):
    """Mean of the real instances, then a linear classifier: the no-attention baseline."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(in_features, n_logits(n_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> MILOutput:
        weights = mask.to(x.dtype) / mask.sum(dim=1, keepdim=True).to(x.dtype)  # (B, N) uniform on real rows
        return MILOutput(self.classifier(attention_pool(x, weights)))


class ABMIL(MILModel):
    """Gated-attention MIL with eva's sizes (kaiko-ai/eva ``src/eva/vision/models/networks/abmil.py``).

    x (B, N, D) → Linear(D, 128) → Dropout → gated attention (hidden 128) → weighted sum (B, 128)
    → MLP 128 → 128 → 64 → logits, ReLU between layers; eva's dropouts are all 0.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden_dim: int = 128,
        attention_dim: int = 128,
        dropout: float = 0.0,
        mlp_dims: tuple[int, ...] = (128, 64),
    ) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden_dim, attention_dim, dropout)
        layers: list[nn.Module] = []
        for width_in, width_out in zip((hidden_dim, *mlp_dims), mlp_dims):
            layers += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(dropout)]
        self.classifier = nn.Sequential(
            *layers, nn.Linear(mlp_dims[-1] if mlp_dims else hidden_dim, n_logits(n_classes))
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> MILOutput:
        h = self.project(x)  # (B, N, H)
        weights = self.attention(h, mask)  # (B, N)
        return MILOutput(self.classifier(attention_pool(h, weights)), weights, h)


def smooth_top1_svm_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0, tau: float = 1.0
) -> torch.Tensor:
    """Smooth multi-class SVM: τ · log Σ_j exp((α·[j ≠ y] + s_j − s_y) / τ), batch mean.

    Berrada, Zisserman & Kumar, "Smooth Loss Functions for Deep Top-k Classification" (ICLR 2018),
    the k = 1 case with their defaults α = τ = 1; CLAM's `--inst_loss svm`.
    """
    margins = alpha * (1.0 - F.one_hot(targets, logits.shape[1]).to(logits.dtype))
    shifted = (margins + logits - logits.gather(1, targets[:, None])) / tau
    return (tau * torch.logsumexp(shifted, dim=1)).mean()


class CLAMSB(MILModel):
    """CLAM, single attention branch, "small" size: gated attention + instance-level clustering.

    x → Linear(D, 512) → ReLU → Dropout → gated attention (hidden 256) → weighted sum → Linear →
    logits. Training adds CLAM's instance loss: for a bag of class y, the k most attended
    instances are pseudo-labelled positive and the k least attended negative for the class-y
    instance classifier (Linear(512, 2)); for more than two classes (CLAM's subtyping mode) every
    other class's classifier also learns the k most attended as negative and the per-class terms
    are averaged. k = min(k_sample, n_real // 2) per bag, so small bags never pick an instance
    twice. Loss = (1 − w)·bag + w·instance, w = 0.3 (CLAM's bag_weight 0.7).
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden_dim: int = 512,
        attention_dim: int = 256,
        dropout: float = 0.25,
        k_sample: int = 8,
        instance_loss: str = "svm",
        instance_loss_weight: float = 0.3,
    ) -> None:
        super().__init__()
        if instance_loss not in ("svm", "ce"):
            raise ValueError(f"CLAM instance_loss must be 'svm' or 'ce', got {instance_loss!r}")
        self.project = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden_dim, attention_dim, dropout)
        self.classifier = nn.Linear(hidden_dim, n_logits(n_classes))
        self.instance_classifiers = nn.ModuleList(nn.Linear(hidden_dim, 2) for _ in range(n_classes))
        self.k_sample, self.instance_loss_weight = k_sample, instance_loss_weight
        self.instance_loss_fn = smooth_top1_svm_loss if instance_loss == "svm" else F.cross_entropy

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> MILOutput:
        h = self.project(x)
        weights = self.attention(h, mask)
        return MILOutput(self.classifier(attention_pool(h, weights)), weights, h)

    def loss(self, output: MILOutput, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bag = head_loss(output.logits, labels)
        terms = [
            self.bag_instance_loss(h[m], a[m], int(y))
            for h, a, m, y in zip(output.embeddings, output.attention, mask, labels)
        ]
        terms = [t for t in terms if t is not None]
        if not terms:
            return bag
        return (1.0 - self.instance_loss_weight) * bag + self.instance_loss_weight * torch.stack(terms).mean()

    def bag_instance_loss(self, h: torch.Tensor, attention: torch.Tensor, label: int) -> torch.Tensor | None:
        """Instance loss of one bag's real instances h (n, H) with attention (n,); None if n < 2."""
        k = min(self.k_sample, len(h) // 2)
        if k == 0:
            return None
        top, bottom = attention.topk(k).indices, (-attention).topk(k).indices
        n_classes = len(self.instance_classifiers)
        losses = []
        for c, classifier in enumerate(self.instance_classifiers):
            if c == label:
                chosen, targets = torch.cat([top, bottom]), torch.cat([torch.ones(k), torch.zeros(k)])
            elif n_classes > 2:
                chosen, targets = top, torch.zeros(k)
            else:
                continue
            losses.append(self.instance_loss_fn(classifier(h[chosen]), targets.long().to(h.device)))
        return torch.stack(losses).mean()


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with a residual, x + MHA(LN(x)), over real tokens only.

    TransMIL's TransLayer. Two choices against the original (szc19990412/TransMIL, which calls
    lucidrains' ``NystromAttention(dim, dim_head=dim // 8, heads=8, num_landmarks=dim // 2,
    pinv_iterations=6, residual=True, dropout=0.1)``):
    - kept: the value residual of that ``residual=True`` — a depthwise convolution of the values
      along the token sequence, one `residual_kernel`-tap (33) kernel per head shared by the
      head's channels, added to the attention output before the output projection; padded tokens
      are zeroed first, so they add nothing to real ones;
    - changed: exact softmax attention (`scaled_dot_product_attention`) instead of the Nyström
      approximation of it, which bags of a few thousand instances do not need.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float, residual_kernel: int | None = 33) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"TransMIL hidden_dim {dim} must be divisible by n_heads {n_heads}")
        self.norm, self.qkv, self.out = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.n_heads, self.dropout = n_heads, dropout
        self.value_residual = (
            None
            if not residual_kernel
            else nn.Conv2d(
                n_heads, n_heads, (residual_kernel, 1), padding=(residual_kernel // 2, 0), groups=n_heads, bias=False
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, H), (B, L) → (new x, attention of token 0 over all tokens averaged over heads (B, L))."""
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, length, 3, self.n_heads, dim // self.n_heads).permute(2, 0, 3, 1, 4)
        keys = mask[:, None, None, :]  # (B, 1, 1, L): attend to real tokens only
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=dropout)  # (B, heads, L, d)
        if self.value_residual is not None:
            attended = attended + self.value_residual(v * mask[:, None, :, None])
        first = (q[:, :, :1] @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~keys, -math.inf)
        first = first.softmax(dim=-1).mean(dim=1)[:, 0]  # (B, L)
        return x + self.out(attended.transpose(1, 2).reshape(b, length, dim)), first


class SequencePositionEncoding(nn.Module):
    """TransMIL's PPEG reduced to one dimension: x + DWConv7(x) + DWConv5(x) + DWConv3(x) along the sequence.

    The paper reshapes the instance tokens into a square image and uses 2-D depthwise convs; with
    no tile coordinates a 1-D conv over the instance order is the faithful analogue. Padding is
    zeroed first, so a bag's real tokens see zeros past its end exactly as the conv's own padding.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, H) instance tokens (class token excluded) → same shape, zero on padding."""
        tokens = tokens * mask[..., None]
        channels = tokens.transpose(1, 2)  # (B, H, N)
        mixed = channels + sum(conv(channels) for conv in self.convs)
        return mixed.transpose(1, 2) * mask[..., None]


class TransMIL(MILModel):
    """TransMIL (Shao et al. 2021): Linear+ReLU → [CLS; tokens] → attention → PPEG → attention → LN → CLS → Linear.

    Against the original (see `SelfAttention`, `SequencePositionEncoding`): the value residual
    conv (33 taps) is kept; exact attention instead of Nyström; a 1-D PPEG over the instance order
    instead of the 2-D square layout (so no square padding by repeated tokens). Attention reported per instance is
    the class token's attention
    in the last layer, averaged over heads and renormalised over the instances.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden_dim: int = 512,
        n_heads: int = 8,
        dropout: float = 0.1,
        residual_kernel: int | None = 33,
    ) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden_dim))
        self.layer1 = SelfAttention(hidden_dim, n_heads, dropout, residual_kernel)
        self.position = SequencePositionEncoding(hidden_dim)
        self.layer2 = SelfAttention(hidden_dim, n_heads, dropout, residual_kernel)
        self.norm = nn.LayerNorm(hidden_dim)
        self.classifier = nn.Linear(hidden_dim, n_logits(n_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> MILOutput:
        h = self.project(x)
        tokens = torch.cat([self.cls_token.expand(len(h), -1, -1), h], dim=1)  # (B, 1 + N, H)
        token_mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)
        tokens, _ = self.layer1(tokens, token_mask)
        tokens = torch.cat([tokens[:, :1], self.position(tokens[:, 1:], mask)], dim=1)
        tokens, cls_attention = self.layer2(tokens, token_mask)
        instance_attention = cls_attention[:, 1:]
        instance_attention = instance_attention / instance_attention.sum(dim=1, keepdim=True)
        return MILOutput(self.classifier(self.norm(tokens[:, 0])), instance_attention, tokens[:, 1:])


MIL_MODELS: dict[str, type[MILModel]] = {
    "mean_pool": MeanPoolMIL,
    "abmil": ABMIL,
    "transmil": TransMIL,
    "clam_sb": CLAMSB,
}
