"""Keypoint sequences as COCO-style keypoint JSON (one image entry per frame).

Layout (COCO "person keypoints"): ``images`` (``id``, ``file_name`` ``<video_id>/<frame>.png``,
``width``, ``height`` and the extra fields ``video_id``, ``frame_index``, ``time_s``),
``annotations`` (one per frame: ``keypoints`` ``[x1, y1, v1, ...]`` in pixels, ``v`` = 2
visible / 0 missing with ``x = y = 0``, ``num_keypoints``, ``bbox`` ``[x, y, w, h]`` of the
visible joints, ``area``, ``iscrowd`` 0, ``category_id`` 1, optional ``score`` and
``keypoint_scores``) and ``categories`` (``keypoints`` names and the 1-based ``skeleton``).

Pixel coordinates follow COCO: ``x`` = 0 at the left edge of the image, so a keypoint in the
batch contract's normalised ``[0, 1]`` coordinates maps to ``x * width``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqnrl.errors import KeypointError
from seqnrl.io.atomic import write_json


def to_coco(
    videos: Mapping[str, np.ndarray],
    image_size: tuple[int, int],
    joint_names: Sequence[str],
    skeleton: Sequence[tuple[int, int]] = (),
    *,
    normalised: bool = True,
    fps: float | Mapping[str, float] | None = None,
    frame_index: Mapping[str, Sequence[int]] | None = None,
    scores: Mapping[str, np.ndarray] | None = None,
    category: str = "person",
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO keypoint document for ``{video_id: (T, J, 2) keypoints}`` (NaN = missing).

    ``image_size`` is ``(H, W)``; ``normalised``: input in [0, 1] (else already pixels);
    ``skeleton``: 0-based joint pairs (written 1-based, as COCO does); ``scores``: optional
    ``(T, J)`` per-keypoint confidences.
    """
    h, w = int(image_size[0]), int(image_size[1])
    images, anns = [], []
    for vid, kp in videos.items():
        kp = np.asarray(kp, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[-1] < 2 or kp.shape[1] != len(joint_names):
            raise ValueError(f"{vid}: keypoints must be (T, {len(joint_names)}, 2), got {kp.shape}")
        xy = kp[..., :2] * np.array([w, h]) if normalised else kp[..., :2]
        rate = fps.get(vid) if isinstance(fps, Mapping) else fps
        fidx = list(frame_index[vid]) if frame_index is not None and vid in frame_index else list(range(len(kp)))
        sc = None if scores is None or vid not in scores else np.asarray(scores[vid], dtype=np.float64)
        for t in range(len(kp)):
            img_id = len(images) + 1
            image = {
                "id": img_id,
                "file_name": f"{vid}/{int(fidx[t]):06d}.png",
                "width": w,
                "height": h,
                "video_id": vid,
                "frame_index": int(fidx[t]),
            }
            if rate and np.isfinite(rate) and rate > 0:
                image["time_s"] = float(fidx[t]) / float(rate)
            images.append(image)
            vis = np.isfinite(xy[t]).all(-1)
            flat = []
            for j in range(len(joint_names)):
                if vis[j]:
                    flat += [round(float(xy[t, j, 0]), 3), round(float(xy[t, j, 1]), 3), 2]
                else:
                    flat += [0.0, 0.0, 0]
            if vis.any():
                lo, hi = xy[t][vis].min(0), xy[t][vis].max(0)
                bbox = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            else:
                bbox = [0.0, 0.0, 0.0, 0.0]
            ann = {
                "id": len(anns) + 1,
                "image_id": img_id,
                "category_id": 1,
                "keypoints": flat,
                "num_keypoints": int(vis.sum()),
                "bbox": [round(b, 3) for b in bbox],
                "area": round(bbox[2] * bbox[3], 3),
                "iscrowd": 0,
            }
            if sc is not None:
                ks = [float(s) if np.isfinite(s) else 0.0 for s in sc[t]]
                ann["keypoint_scores"] = ks
                ann["score"] = float(np.mean(ks)) if ks else 0.0
            anns.append(ann)
    return {
        "info": dict(info or {"description": "seqnrl keypoints"}),
        "images": images,
        "annotations": anns,
        "categories": [
            {
                "id": 1,
                "name": category,
                "supercategory": category,
                "keypoints": list(joint_names),
                "skeleton": [[int(a) + 1, int(b) + 1] for a, b in skeleton],
            }
        ],
    }


def write_coco_keypoints(path: str | os.PathLike, videos: Mapping[str, np.ndarray], image_size: tuple[int, int], joint_names: Sequence[str], skeleton: Sequence[tuple[int, int]] = (), **kwargs: Any) -> Path:
    """Write :func:`to_coco` to ``path`` atomically (keyword arguments as there)."""
    return write_json(path, to_coco(videos, image_size, joint_names, skeleton, **kwargs))


def read_coco_keypoints(path: str | os.PathLike, normalised: bool = False) -> dict[str, Any]:
    """Read a file written by :func:`write_coco_keypoints` (or any COCO keypoint file whose
    images carry ``video_id``/``frame_index``; otherwise every image is its own frame of one
    video ``""`` in id order).

    Returns ``{"joint_names", "skeleton" (0-based), "videos": {video_id: {"keypoints"
    (T, J, 2) pixels (or [0, 1] with ``normalised``), NaN where v = 0, "frame_index" (T,)}}}``.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        cat = doc["categories"][0]
        names = list(cat["keypoints"])
        skel = [(int(a) - 1, int(b) - 1) for a, b in cat.get("skeleton", [])]
        images = {im["id"]: im for im in doc["images"]}
        per: dict[str, list[tuple[int, np.ndarray]]] = {}
        for ann in doc["annotations"]:
            im = images[ann["image_id"]]
            k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            xy = np.where((k[:, 2:] > 0), k[:, :2], np.nan)
            if normalised:
                xy = xy / np.array([im["width"], im["height"]], dtype=np.float64)
            per.setdefault(str(im.get("video_id", "")), []).append((int(im.get("frame_index", im["id"])), xy))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise KeypointError(f"not a COCO keypoint file ({type(e).__name__}: {e})", p) from e
    videos = {}
    for vid, rows in per.items():
        rows.sort(key=lambda r: r[0])
        videos[vid] = {
            "keypoints": np.stack([r[1] for r in rows]),
            "frame_index": np.array([r[0] for r in rows], dtype=np.int64),
        }
    return {"joint_names": names, "skeleton": skel, "videos": videos}
