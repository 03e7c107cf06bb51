"""Spatiotemporal transformer normative model: factorised space-time attention or per-frame
CNN + temporal transformer (UVT), masked-tube reconstruction or future-frame prediction."""

from seqnrl.models.st_transformer.module import STTransformerModel
from seqnrl.models.st_transformer.net import STTransformerNet

__all__ = ["STTransformerModel", "STTransformerNet"]
