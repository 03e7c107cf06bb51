"""Conditional video diffusion (EchoDiffusion-style) and pseudo-healthy anomaly scoring."""

from seqnrl.models.video_diffusion.features import PixelPCAFeatures
from seqnrl.models.video_diffusion.latent import FrameLatentAutoEncoder
from seqnrl.models.video_diffusion.module import VideoDiffusionModel, load_video_diffusion
from seqnrl.models.video_diffusion.net import VideoDiffusionNet

__all__ = [
    "FrameLatentAutoEncoder",
    "PixelPCAFeatures",
    "VideoDiffusionModel",
    "VideoDiffusionNet",
    "load_video_diffusion",
]
