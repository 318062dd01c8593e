"""SSL losses, one standalone file each (DINO, iBOT, KoLeo, SimCLR, MoCo, BYOL, SimSiam, Barlow)."""

from pathgen.ssl.losses.barlow import barlow_twins_loss, cross_correlation
from pathgen.ssl.losses.byol import byol_loss
from pathgen.ssl.losses.dino import DINOLoss, teacher_temperature
from pathgen.ssl.losses.ibot import IBOTPatchLoss
from pathgen.ssl.losses.koleo import koleo_loss
from pathgen.ssl.losses.moco import KeyQueue, mocov2_loss, mocov3_contrastive, mocov3_loss
from pathgen.ssl.losses.simclr import nt_xent_loss
from pathgen.ssl.losses.simsiam import negative_cosine, simsiam_loss

__all__ = [
    "DINOLoss",
    "IBOTPatchLoss",
    "KeyQueue",
    "barlow_twins_loss",
    "byol_loss",
    "cross_correlation",
    "koleo_loss",
    "mocov2_loss",
    "mocov3_contrastive",
    "mocov3_loss",
    "negative_cosine",
    "nt_xent_loss",
    "simsiam_loss",
    "teacher_temperature",
]
