"""Generative augmentation for SSL: generated views in training and the methods built on them.

GenView (Li et al., ECCV 2024): `foreground` (foreground ratio and soft maps: a stage-1 ViT's
top PCA direction by default, or hematoxylin density), `adaptive_noise` (ratio → img2img
strength) and `quality` (quality-driven pair weights for `SSLMethod.pair_weighter`).
"""
