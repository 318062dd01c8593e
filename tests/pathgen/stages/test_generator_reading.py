"""The report's plain-words reading of eval-gen numbers says what is weak, and only that."""

from __future__ import annotations

from pathgen.stages.generator_reading import generator_reading


def metrics(rate: float, shuffled: float, vae: float, fidelity: float, precision: float, n_views: int = 128) -> dict:
    """One encoder's eval-gen entry, shaped as metrics.json writes it (real tiles: 0.89 retrieval, 0.90 precision)."""
    return {
        "fidelity": {
            "retrieval_top1": rate,
            "retrieval_chance": 1 / 64,
            "n_views": n_views,
            "fidelity": fidelity,
            "random_pairs": 0.978,
        },
        "references": {
            "real_at_bank_size": {"retrieval_top1": 0.89},
            "vae_reconstruction": {"retrieval_top1": vae},
            "shuffled_conditioning": {"retrieval_top1": shuffled},
        },
        "precision_recall": {"views": {"precision": precision}, "real_vs_real": {"precision": 0.90}},
    }


def test_the_demos_weak_views_are_called_weak_on_every_count() -> None:
    text = generator_reading(metrics(rate=0.039, shuffled=0.023, vae=0.25, fidelity=0.871, precision=0.365))
    assert "no more often" in text and "0.039" in text and "0.023" in text
    assert "autoencoder alone loses most" in text and "0.25" in text
    assert "less like their source than a random real tile" in text
    assert "only 36% of views" in text


def test_a_good_generator_gets_its_rate_and_no_warnings() -> None:
    text = generator_reading(metrics(rate=0.45, shuffled=0.02, vae=0.75, fidelity=0.99, precision=0.85))
    assert text == "Reading: views find their own source at 0.45, 28.8× chance."


def test_two_standard_errors_decide_against_shuffled_conditioning() -> None:
    # 0.10 vs 0.05: the standard error of the difference is 0.043 at 128 views (not apart), 0.015 at 1,024 (apart)
    few = generator_reading(metrics(rate=0.10, shuffled=0.05, vae=0.75, fidelity=0.99, precision=0.85))
    many = generator_reading(metrics(0.10, 0.05, 0.75, 0.99, 0.85, n_views=1024))
    assert "no more often" in few and "no more often" not in many and "6.4× chance" in many


def test_missing_numbers_give_no_reading() -> None:
    assert generator_reading({}) == ""
