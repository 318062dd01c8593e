"""pathgen embeddings written in the feature layouts other MIL codebases read (CLAM, TRIDENT, eva)."""

from pathgen.feature_formats.writer import FORMATS, export_features

__all__ = ["FORMATS", "export_features"]
