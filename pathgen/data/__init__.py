"""Datasets over tile stores and pathology augmentations."""
