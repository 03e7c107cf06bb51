"""Unsupervised pose from shape templates (Gaussian parts, one affine per part)."""

from seqnrl.models.pose.module import PoseTemplateModel
from seqnrl.models.pose.net import ShapeTemplateNet
from seqnrl.models.pose.templates import ShapeTemplate, load_template

__all__ = ["PoseTemplateModel", "ShapeTemplate", "ShapeTemplateNet", "load_template"]
