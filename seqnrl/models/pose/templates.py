"""Shape templates: the part layouts of the unsupervised pose model, as data.

A template is a set of *joints* (canonical positions in normalised image coordinates
``[0, 1]``, ``x`` right, ``y`` down; each attached to one or more parts) and *parts* (an
anisotropic Gaussian blob along the segment between two of the joints). A joint attached to
two or more parts is a *connection*: the anchor loss makes its position under every
attached part's affine transform coincide. A joint attached to one part is an end point
(head top, wrist, ankle). Keypoints are the joints, each read off the mean of its attached
parts' transforms.

Templates are plain mappings (the two built-in ones below, a YAML file, or an inline dict in
a LightningCLI config) turned into a validated :class:`ShapeTemplate` by
:func:`load_template`. YAML layout::

    name: adult
    part_sigma_along: 0.3       # Gaussian std along a part, as a fraction of its length
    joints:                     # name: [x, y, [part, ...]]
      neck: [0.50, 0.27, [torso, head, l_upper_arm, r_upper_arm]]
      head_top: [0.50, 0.14, [head]]
    parts:                      # name: [joint_a, joint_b, width]  (width = std across)
      head: [neck, head_top, 0.045]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqnrl.errors import ConfigError

# Adult standing/walking body seen from the front-side, about 0.75 of the frame tall
# (the synthetic walker and the CMU renders): torso, head, two arm and two leg segments per side.
ADULT: dict[str, Any] = {
    "name": "adult",
    "part_sigma_along": 0.3,
    "joints": {
        "head_top": [0.50, 0.15, ["head"]],
        "neck": [0.50, 0.28, ["torso", "head"]],
        "l_shoulder": [0.55, 0.30, ["torso", "l_upper_arm"]],
        "l_elbow": [0.56, 0.41, ["l_upper_arm", "l_forearm"]],
        "l_wrist": [0.56, 0.51, ["l_forearm"]],
        "r_shoulder": [0.45, 0.30, ["torso", "r_upper_arm"]],
        "r_elbow": [0.44, 0.41, ["r_upper_arm", "r_forearm"]],
        "r_wrist": [0.44, 0.51, ["r_forearm"]],
        "pelvis": [0.50, 0.51, ["torso"]],
        "l_hip": [0.53, 0.51, ["torso", "l_thigh"]],
        "l_knee": [0.54, 0.69, ["l_thigh", "l_shin"]],
        "l_ankle": [0.54, 0.86, ["l_shin"]],
        "r_hip": [0.47, 0.51, ["torso", "r_thigh"]],
        "r_knee": [0.46, 0.69, ["r_thigh", "r_shin"]],
        "r_ankle": [0.46, 0.86, ["r_shin"]],
    },
    "parts": {
        "torso": ["neck", "pelvis", 0.05],
        "head": ["neck", "head_top", 0.035],
        "l_upper_arm": ["l_shoulder", "l_elbow", 0.022],
        "l_forearm": ["l_elbow", "l_wrist", 0.02],
        "r_upper_arm": ["r_shoulder", "r_elbow", 0.022],
        "r_forearm": ["r_elbow", "r_wrist", 0.02],
        "l_thigh": ["l_hip", "l_knee", 0.026],
        "l_shin": ["l_knee", "l_ankle", 0.022],
        "r_thigh": ["r_hip", "r_knee", 0.026],
        "r_shin": ["r_knee", "r_ankle", 0.022],
    },
}

# Infant lying supine, seen from above (cot camera): a short torso in the middle, a large
# head, arms bent up beside the head ("W") and legs flexed and abducted ("frog").
INFANT: dict[str, Any] = {
    "name": "infant",
    "part_sigma_along": 0.3,
    "joints": {
        "head_top": [0.50, 0.12, ["head"]],
        "neck": [0.50, 0.33, ["torso", "head"]],
        "l_shoulder": [0.58, 0.36, ["torso", "l_upper_arm"]],
        "l_elbow": [0.70, 0.44, ["l_upper_arm", "l_forearm"]],
        "l_wrist": [0.72, 0.32, ["l_forearm"]],
        "r_shoulder": [0.42, 0.36, ["torso", "r_upper_arm"]],
        "r_elbow": [0.30, 0.44, ["r_upper_arm", "r_forearm"]],
        "r_wrist": [0.28, 0.32, ["r_forearm"]],
        "pelvis": [0.50, 0.60, ["torso"]],
        "l_hip": [0.55, 0.60, ["torso", "l_thigh"]],
        "l_knee": [0.67, 0.73, ["l_thigh", "l_shin"]],
        "l_ankle": [0.60, 0.86, ["l_shin"]],
        "r_hip": [0.45, 0.60, ["torso", "r_thigh"]],
        "r_knee": [0.33, 0.73, ["r_thigh", "r_shin"]],
        "r_ankle": [0.40, 0.86, ["r_shin"]],
    },
    "parts": {
        "torso": ["neck", "pelvis", 0.07],
        "head": ["neck", "head_top", 0.075],
        "l_upper_arm": ["l_shoulder", "l_elbow", 0.025],
        "l_forearm": ["l_elbow", "l_wrist", 0.022],
        "r_upper_arm": ["r_shoulder", "r_elbow", 0.025],
        "r_forearm": ["r_elbow", "r_wrist", 0.022],
        "l_thigh": ["l_hip", "l_knee", 0.03],
        "l_shin": ["l_knee", "l_ankle", 0.026],
        "r_thigh": ["r_hip", "r_knee", 0.03],
        "r_shin": ["r_knee", "r_ankle", 0.026],
    },
}

BUILTIN: dict[str, dict[str, Any]] = {"adult": ADULT, "infant": INFANT}


@dataclass(frozen=True)
class Part:
    name: str
    joint_a: str
    joint_b: str
    width: float


@dataclass(frozen=True)
class Joint:
    name: str
    position: tuple[float, float]
    parts: tuple[str, ...]


@dataclass(frozen=True)
class ShapeTemplate:
    """A validated template (see the module docstring)."""

    name: str
    joints: tuple[Joint, ...]
    parts: tuple[Part, ...]
    part_sigma_along: float = 0.3

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    def skeleton(self) -> list[tuple[int, int]]:
        """Edges ``(joint_a, joint_b)`` (indices) drawn for this template: the part axes."""
        idx = {n: i for i, n in enumerate(self.joint_names)}
        return [(idx[p.joint_a], idx[p.joint_b]) for p in self.parts]

    def connections(self) -> list[tuple[int, int, int]]:
        """``(joint, part_a, part_b)`` for every pair of parts sharing a joint."""
        pidx = {n: i for i, n in enumerate(self.part_names)}
        out = []
        for j, joint in enumerate(self.joints):
            ps = [pidx[p] for p in joint.parts]
            out += [(j, ps[a], ps[b]) for a in range(len(ps)) for b in range(a + 1, len(ps))]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "part_sigma_along": self.part_sigma_along,
            "joints": {j.name: [*j.position, list(j.parts)] for j in self.joints},
            "parts": {p.name: [p.joint_a, p.joint_b, p.width] for p in self.parts},
        }


def template_from_dict(d: Mapping[str, Any], source: str = "") -> ShapeTemplate:
    """Validate a template mapping (layout in the module docstring)."""
    src = source or None
    try:
        name = str(d.get("name", source or "template"))
        sig = float(d.get("part_sigma_along", 0.3))
        joints_in, parts_in = d["joints"], d["parts"]
        parts = tuple(Part(str(n), str(v[0]), str(v[1]), float(v[2])) for n, v in parts_in.items())
        joints = tuple(
            Joint(str(n), (float(v[0]), float(v[1])), tuple(str(p) for p in v[2]))
            for n, v in joints_in.items()
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ConfigError(f"malformed shape template ({type(e).__name__}: {e})", src) from e
    pnames = {p.name for p in parts}
    jnames = {j.name for j in joints}
    if not parts or not joints:
        raise ConfigError("a shape template needs at least one part and one joint", src)
    if len(pnames) != len(parts) or len(jnames) != len(joints):
        raise ConfigError("duplicate part or joint names in the shape template", src)
    for p in parts:
        for jn in (p.joint_a, p.joint_b):
            if jn not in jnames:
                raise ConfigError(f"part {p.name!r} refers to unknown joint {jn!r}", src)
        if p.width <= 0:
            raise ConfigError(f"part {p.name!r} needs a positive width, got {p.width}", src)
    used = set()
    for j in joints:
        if not j.parts:
            raise ConfigError(f"joint {j.name!r} is attached to no part", src)
        for pn in j.parts:
            if pn not in pnames:
                raise ConfigError(f"joint {j.name!r} is attached to unknown part {pn!r}", src)
            used.add(pn)
    if used != pnames:
        raise ConfigError(f"parts with no joint attached: {sorted(pnames - used)}", src)
    if not sig > 0:
        raise ConfigError(f"part_sigma_along must be positive, got {sig}", src)
    return ShapeTemplate(name, joints, parts, sig)


def load_template(spec: str | os.PathLike | Mapping[str, Any] | ShapeTemplate) -> ShapeTemplate:
    """A built-in template by name (``adult``, ``infant``), a YAML file, a mapping, or a template."""
    if isinstance(spec, ShapeTemplate):
        return spec
    if isinstance(spec, Mapping):
        return template_from_dict(spec)
    s = str(spec)
    if s in BUILTIN:
        return template_from_dict(BUILTIN[s], s)
    path = Path(s).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"unknown shape template {s!r}: not one of {sorted(BUILTIN)} and not a YAML file"
        )
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read shape template: {e}", path) from e
    if not isinstance(d, Mapping):
        raise ConfigError("a shape template file must hold a mapping", path)
    return template_from_dict(d, str(path))
