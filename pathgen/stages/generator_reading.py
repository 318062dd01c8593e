"""One bank's eval-gen numbers in plain words, so a report cannot show weak views without saying so.

The numbers themselves (source retrieval, its resolution-matched references, conditioning
fidelity, precision / recall) come from `pathgen.stages.eval_gen`; this module only reads them.
Retrieval is a share of `n_views` trials, so two retrieval rates are called different only when
they differ by more than two standard errors of their difference (binomial, independent trials).
"""

from __future__ import annotations

import math


def _standard_error_of_difference(p: float, q: float, n: int) -> float:
    """Binomial standard error of p − q, each a rate over n independent trials."""
    return math.sqrt(max(p * (1 - p) + q * (1 - q), 1e-12) / n)


def _retrieval_words(fidelity: dict, references: dict) -> list[str]:
    rate, chance, trials = fidelity.get("retrieval_top1"), fidelity.get("retrieval_chance"), fidelity.get("n_views")
    if rate is None or not trials:
        return []
    shuffled = (references.get("shuffled_conditioning") or {}).get("retrieval_top1")
    real = (references.get("real_at_bank_size") or {}).get("retrieval_top1")
    vae = (references.get("vae_reconstruction") or {}).get("retrieval_top1")
    if shuffled is not None and rate - shuffled <= 2 * _standard_error_of_difference(rate, shuffled, trials):
        words = [
            f"views find their own source ({rate:.3g}) no more often, within two standard errors over {trials} "
            f"views, than views conditioned on another tile's embedding ({shuffled:.3g}): the conditioning does "
            "not carry the tile through"
        ]
    else:
        words = [f"views find their own source at {rate:.3g}, {rate / chance:.1f}× chance" if chance else ""]
    if vae is not None and real is not None and vae < 0.5 * real:
        words.append(
            f"the autoencoder alone loses most of what the encoder sees (its reconstructions retrieve at {vae:.3g}, "
            f"the real tiles at {real:.3g}), before the diffusion model starts"
        )
    return [w for w in words if w]


def _distribution_words(fidelity: dict, views: dict, real: dict) -> list[str]:
    words = []
    if fidelity.get("fidelity") is not None and fidelity.get("random_pairs") is not None:
        if fidelity["fidelity"] < fidelity["random_pairs"]:
            words.append(
                f"views are less like their source than a random real tile is (fidelity {fidelity['fidelity']:.3g} "
                f"< random real pairs {fidelity['random_pairs']:.3g}): they lie off the real tiles' distribution"
            )
    precision, real_precision = views.get("precision"), real.get("precision")
    if precision is not None and real_precision and precision < 0.5 * real_precision:
        words.append(
            f"only {precision:.0%} of views fall inside the real tiles' manifold "
            f"(two real samples: {real_precision:.0%})"
        )
    return words


def generator_reading(encoder_metrics: dict) -> str:
    """A sentence saying what one encoder's eval-gen numbers for a bank mean, weaknesses first.

    `encoder_metrics` is one entry of eval-gen's metrics.json "encoders" (fidelity, references,
    precision_recall). Returns "" when the numbers needed are missing.
    """
    fidelity, references = encoder_metrics.get("fidelity") or {}, encoder_metrics.get("references") or {}
    pr = encoder_metrics.get("precision_recall") or {}
    words = _retrieval_words(fidelity, references) + _distribution_words(
        fidelity, pr.get("views") or {}, pr.get("real_vs_real") or {}
    )
    return ("Reading: " + "; ".join(words) + ".") if words else ""
