"""Motion normative model: a spatiotemporal transformer over keypoint sequences."""

from seqnrl.models.motion.module import MotionTransformerModel
from seqnrl.models.motion.net import MotionTransformerNet

__all__ = ["MotionTransformerModel", "MotionTransformerNet"]
