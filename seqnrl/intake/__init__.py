"""Intake of clinical recordings: sector / field-of-view masking and DICOM de-identification."""

from seqnrl.intake.sector import (
    SectorMask,
    SectorParams,
    apply_mask,
    detect_sector,
    load_mask_png,
    resize_mask,
    save_mask_png,
    sector_mask_for,
)

__all__ = [
    "SectorMask",
    "SectorParams",
    "apply_mask",
    "detect_sector",
    "load_mask_png",
    "resize_mask",
    "save_mask_png",
    "sector_mask_for",
]
