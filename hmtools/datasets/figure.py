"""An articulated 2-D human figure for the synthetic diving generator.

A :class:`Pose` gives joint angles in the body frame; :func:`joints` turns it into image points
(hip at ``center``, body length ``length`` pixels, somersault angle ``theta``, twist ``twist``
around the long axis); :func:`draw_figure` rasterises head, torso and eight limb segments into a
colour image and, with the identical geometry, into the binary ground-truth mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# segment lengths and thicknesses as fractions of the body length L (hip to head top ~0.68 L)
_TORSO, _NECK_TO_HEAD = 0.42, 0.13
_THIGH, _SHIN = 0.25, 0.25
_UPPER_ARM, _FOREARM = 0.17, 0.16
_HEAD_R = 0.085
_THICK = {"torso": 0.16, "thigh": 0.105, "shin": 0.075, "upper_arm": 0.065, "forearm": 0.055}
_HALF_WIDTH = 0.07  # lateral offset of left/right limbs (visible when the body twists)


@dataclass
class Pose:
    """Joint angles in degrees. 0 everywhere is standing straight with arms down.

    hip: flexion between torso and thighs (150 = closed pike); knee: flexion (140 = tight tuck);
    shoulder: arm elevation (180 = arms overhead); elbow: flexion; spread: left/right asymmetry
    of legs (0 = legs together) -- a visible execution fault.
    """

    hip: float = 0.0
    knee: float = 0.0
    shoulder: float = 0.0
    elbow: float = 0.0
    spread: float = 0.0


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def joints(
    pose: Pose,
    center: tuple[float, float],
    length: float,
    theta: float,
    twist: float = 0.0,
    facing: int = 1,
) -> dict[str, np.ndarray]:
    """Image coordinates of the joints (``left_``/``right_`` limbs, ``head``, ``neck``, ``hip``).

    Body frame: axis ``a`` along the torso (towards the head), ``b`` forward (sagittal), ``c``
    lateral. Twisting by ``twist`` mixes ``b`` and ``c`` (the side view compresses); the result
    is rotated by the somersault angle ``theta`` (0 = upright, positive = forward rotation for a
    figure facing right) and mirrored when ``facing`` is -1.
    """
    up = np.array([0.0, 1.0])  # (b, a): a is "up" along the torso
    pts3: dict[str, tuple[float, float, float]] = {"hip": (0.0, 0.0, 0.0)}
    neck = up * _TORSO
    pts3["neck"] = (neck[0], neck[1], 0.0)
    head = up * (_TORSO + _NECK_TO_HEAD)
    pts3["head"] = (head[0], head[1], 0.0)
    for side, sgn in (("left", -1.0), ("right", 1.0)):
        c = sgn * _HALF_WIDTH
        # legs point down (-a); hip flexion swings them forward (+b)
        thigh_dir = _rot(-up, -(pose.hip + sgn * pose.spread / 2))
        knee = thigh_dir * _THIGH
        shin_dir = _rot(thigh_dir, pose.knee)
        ankle = knee + shin_dir * _SHIN
        pts3[f"{side}_knee"] = (knee[0], knee[1], c)
        pts3[f"{side}_ankle"] = (ankle[0], ankle[1], c)
        arm_dir = _rot(-up, -pose.shoulder)
        elbow = neck + arm_dir * _UPPER_ARM
        fore_dir = _rot(arm_dir, -pose.elbow)
        hand = elbow + fore_dir * _FOREARM
        pts3[f"{side}_elbow"] = (elbow[0], elbow[1], c * 1.6)
        pts3[f"{side}_hand"] = (hand[0], hand[1], c * 1.6)
    tw = np.deg2rad(twist)
    out = {}
    for name, (b, a, c) in pts3.items():
        b2 = b * np.cos(tw) + c * np.sin(tw)
        # image: x right, y down; upright figure has head at -y
        v = _rot(np.array([b2 * facing, -a]), theta * facing) * length
        out[name] = np.array([center[0] + v[0], center[1] + v[1]])
    return out


_SEGMENTS = [
    ("torso", "hip", "neck"),
    ("thigh", "hip", "{s}_knee"),
    ("shin", "{s}_knee", "{s}_ankle"),
    ("upper_arm", "neck", "{s}_elbow"),
    ("forearm", "{s}_elbow", "{s}_hand"),
]


def _segments(j: dict[str, np.ndarray], length: float, twist: float, facing: int):
    """Yield (kind, p, q, thickness, far) in back-to-front order."""
    # which side is farther from the camera depends on twist and facing
    far_side = "left" if (np.sin(np.deg2rad(twist)) * facing) >= 0 else "right"
    near_side = "right" if far_side == "left" else "left"
    for side in (far_side, near_side):
        for kind, a, b in _SEGMENTS[1:]:
            yield (
                kind,
                j[a.format(s=side)],
                j[b.format(s=side)],
                _THICK[kind] * length,
                side == far_side,
            )
        if side == far_side:
            yield "torso", j["hip"], j["neck"], _THICK["torso"] * length, False


def draw_figure(
    image: np.ndarray | None,
    mask: np.ndarray | None,
    j: dict[str, np.ndarray],
    length: float,
    *,
    skin: tuple[int, int, int] = (150, 180, 225),
    suit: tuple[int, int, int] = (60, 40, 160),
    twist: float = 0.0,
    facing: int = 1,
    alpha: float = 1.0,
) -> None:
    """Draw the figure into ``image`` (BGR uint8, blended by ``alpha``) and/or set ``mask``
    pixels to 1 with the same geometry. Either target may be ``None``."""
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = 1 << shift

    def P(p: np.ndarray) -> tuple[int, int]:
        return int(round(p[0] * scale)), int(round(p[1] * scale))

    layer = None
    if image is not None:
        layer = image if alpha >= 1.0 else image.copy()
    for kind, p, q, th, far in _segments(j, length, twist, facing):
        t = max(1, int(round(th)))
        color = suit if kind == "torso" else skin
        if far:
            color = tuple(int(c * 0.8) for c in color)
        if layer is not None:
            cv2.line(layer, P(p), P(q), color, t, cv2.LINE_AA, shift)
        if mask is not None:
            cv2.line(mask, P(p), P(q), 1, t, cv2.LINE_8, shift)
    r = max(1, int(round(_HEAD_R * length * scale)))
    if layer is not None:
        cv2.circle(layer, P(j["head"]), r, skin, -1, cv2.LINE_AA, shift)
        hair = tuple(int(c * 0.35) for c in skin)
        cv2.circle(
            layer,
            P(j["head"] + (j["head"] - j["neck"]) * 0.15),
            int(r * 0.7),
            hair,
            -1,
            cv2.LINE_AA,
            shift,
        )
    if mask is not None:
        cv2.circle(mask, P(j["head"]), r, 1, -1, cv2.LINE_8, shift)
    if image is not None and layer is not image:
        cv2.addWeighted(layer, alpha, image, 1 - alpha, 0, dst=image)


def figure_mask(
    shape: tuple[int, int],
    pose: Pose,
    center: tuple[float, float],
    length: float,
    theta: float,
    twist: float = 0.0,
    facing: int = 1,
) -> np.ndarray:
    """Binary mask ``uint8 [H, W]`` of one figure (used for person-like test masks too)."""
    m = np.zeros(shape, np.uint8)
    draw_figure(
        None,
        m,
        joints(pose, center, length, theta, twist, facing),
        length,
        twist=twist,
        facing=facing,
    )
    return m
