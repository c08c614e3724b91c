"""Scene pieces of the synthetic diving generator: venue background, camera, splash, lighting.

World coordinates are "reference pixels" of a 256-pixel-high broadcast frame; the venue is
``WORLD_W x WORLD_H`` of them, with the water surface at ``WATER_Y``. The background is rendered
once per venue at ``oversample`` times the output scale and cropped by the camera every frame
(``cv2.warpAffine``), so pan and zoom are cheap and the clutter moves like a real background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORLD_W, WORLD_H = 1100.0, 900.0
WATER_Y = 780.0


@dataclass
class Venue:
    """A rendered background and the geometry the athletes need."""

    canvas: np.ndarray  # BGR uint8, world scaled by ``scale``
    scale: float  # canvas pixels per world unit
    platform_y: float  # top of the take-off platform/board (world y)
    platform_edge: float  # x of the platform's front edge
    water_y: float = WATER_Y


def _crowd(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Crowd-like texture: rows of small heads and shirts in many colours."""
    img = np.full((h, w, 3), rng.integers(30, 90, 3), np.uint8)
    row_h = max(6, int(h / rng.integers(6, 11)))
    for y in range(row_h // 2, h, row_h):
        x = int(rng.integers(0, 6))
        while x < w:
            sw = int(rng.integers(row_h // 2, row_h))
            shirt = tuple(int(c) for c in rng.integers(20, 240, 3))
            cv2.ellipse(img, (x, y + row_h // 3), (sw // 2, row_h // 2), 0, 180, 360, shirt, -1)
            skin = tuple(
                int(c)
                for c in (rng.integers(60, 140), rng.integers(90, 170), rng.integers(120, 230))
            )
            cv2.circle(img, (x, y - row_h // 6), max(2, row_h // 4), skin, -1)
            x += sw + int(rng.integers(0, 4))
    return cv2.GaussianBlur(img, (3, 3), 0)


def render_venue(
    rng: np.random.Generator, out_scale: float, platform_y: float, oversample: float = 1.5
) -> Venue:
    """Wall, crowd stands, pillars, scoreboard, tower with platform/board, pool with lanes."""
    s = out_scale * oversample
    W, H = int(WORLD_W * s), int(WORLD_H * s)
    top = rng.integers(40, 200, 3).astype(np.float32)
    bottom = rng.integers(20, 120, 3).astype(np.float32)
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    canvas = np.ascontiguousarray(np.broadcast_to(top * (1 - t) + bottom * t, (H, W, 3)))
    canvas = canvas.astype(np.uint8)
    # crowd stands behind the pool
    c0, c1 = int(rng.uniform(0.15, 0.35) * WATER_Y * s), int(rng.uniform(0.7, 0.92) * WATER_Y * s)
    cx0 = int(rng.uniform(0.02, 0.3) * W)
    canvas[c0:c1, cx0:] = _crowd(rng, W - cx0, c1 - c0)
    # pillars, rails, a scoreboard
    for _ in range(int(rng.integers(2, 6))):
        x = int(rng.uniform(0, W))
        col = tuple(int(c) for c in rng.integers(80, 230, 3))
        cv2.rectangle(canvas, (x, 0), (x + int(rng.uniform(6, 20) * s), int(WATER_Y * s)), col, -1)
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.uniform(0.1, 0.9) * WATER_Y * s)
        cv2.line(
            canvas,
            (cx0, y),
            (W, y),
            tuple(int(c) for c in rng.integers(150, 255, 3)),
            max(1, int(2 * s)),
        )
    bx, by = int(rng.uniform(0.5, 0.85) * W), int(rng.uniform(0.05, 0.25) * H)
    cv2.rectangle(canvas, (bx, by), (bx + int(120 * s), by + int(50 * s)), (20, 20, 20), -1)
    for k in range(3):
        cv2.putText(
            canvas,
            str(rng.integers(10, 99)),
            (bx + int((10 + 38 * k) * s), by + int(38 * s)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.9 * s,
            (0, 200, 255),
            max(1, int(2 * s)),
        )
    # tower and platform (the take-off surface); pool in front of the tower
    edge = rng.uniform(260, 360)
    grey = int(rng.integers(120, 210))
    for level in rng.uniform(120, WATER_Y - 120, int(rng.integers(1, 4))):  # other platforms
        if abs(level - platform_y) > 60:
            x1 = edge - rng.uniform(20, 90)
            cv2.rectangle(
                canvas,
                (0, int(level * s)),
                (int(x1 * s), int((level + 10) * s)),
                (grey - 20, grey - 20, grey - 10),
                -1,
            )
    cv2.rectangle(
        canvas,
        (0, int(platform_y * s)),
        (int(edge * s), int((platform_y + 14) * s)),
        (grey, grey, grey),
        -1,
    )
    cv2.rectangle(
        canvas,
        (int((edge - 120) * s), int((platform_y + 14) * s)),
        (int((edge - 60) * s), int(WATER_Y * s)),
        (grey - 40, grey - 40, grey - 30),
        -1,
    )
    water = np.array(
        [rng.integers(150, 230), rng.integers(110, 170), rng.integers(20, 70)], np.float32
    )
    wy = int(WATER_Y * s)
    yy, xx = np.mgrid[0 : H - wy, 0:W].astype(np.float32)
    ripple = 12 * np.sin(xx / (7 * s) + 3 * np.sin(yy / (5 * s))) * np.exp(-yy / (200 * s))
    canvas[wy:] = np.clip(water + ripple[..., None], 0, 255).astype(np.uint8)
    for k in range(1, 4):
        y = wy + int(k * 25 * s)
        if y < H:
            col = tuple(int(c) for c in rng.integers(0, 255, 3))
            for x in range(0, W, int(12 * s)):
                cv2.circle(canvas, (x, y), max(1, int(3 * s)), col, -1)
    return Venue(canvas=canvas, scale=s, platform_y=platform_y, platform_edge=edge)


@dataclass
class Camera:
    """A broadcast camera: world point ``center`` at the frame centre, ``zoom`` output pixels per
    reference pixel (times the output scale)."""

    center: np.ndarray
    zoom: float
    out_w: int
    out_h: int
    out_scale: float  # output pixels per reference pixel at zoom 1

    @property
    def ppu(self) -> float:
        """Output pixels per world unit."""
        return self.zoom * self.out_scale

    def to_image(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, np.float64) - self.center) * self.ppu + (
            self.out_w / 2,
            self.out_h / 2,
        )

    def clamp(self) -> None:
        """Keep the view inside the venue (cameras do not look past the pool's far wall)."""
        half = np.array([self.out_w, self.out_h]) / (2 * self.ppu)
        lo, hi = half, np.array([WORLD_W, WORLD_H]) - half
        self.center = np.where(lo < hi, np.clip(self.center, lo, hi), (lo + hi) / 2)

    def render(self, venue: Venue) -> np.ndarray:
        k = self.ppu / venue.scale  # output px per canvas px
        tx = self.out_w / 2 - self.center[0] * venue.scale * k
        ty = self.out_h / 2 - self.center[1] * venue.scale * k
        M = np.array([[k, 0, tx], [0, k, ty]], np.float64)
        return cv2.warpAffine(
            venue.canvas,
            M,
            (self.out_w, self.out_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )


@dataclass
class Splash:
    """Particles thrown up where the diver enters; ``size`` in [0, 1] is the execution factor."""

    x: float
    size: float
    t0: int
    particles: np.ndarray  # [n, 5]: x offset, vx, vy, radius, brightness

    @classmethod
    def create(cls, rng: np.random.Generator, x: float, size: float, t0: int) -> Splash:
        n = int(8 + 180 * size**1.5)
        p = np.empty((n, 5), np.float32)
        p[:, 0] = rng.normal(0, 3 + 10 * size, n)
        p[:, 1] = rng.normal(0, 0.6 + 1.8 * size, n)
        p[:, 2] = -rng.uniform(1.0, 2.0 + 9.0 * size, n)
        p[:, 3] = rng.uniform(1.0, 2.0 + 4.5 * size, n)
        p[:, 4] = rng.uniform(200, 255, n)
        return cls(x, size, t0, p)

    def draw(self, image: np.ndarray, occluder: np.ndarray | None, cam: Camera, t: int) -> None:
        """Draw at frame ``t`` into ``image``; mark covered pixels in ``occluder``."""
        dt = t - self.t0
        if dt < 0:
            return
        g = 0.45
        p = self.particles
        xs = self.x + p[:, 0] + p[:, 1] * dt
        ys = WATER_Y + p[:, 2] * dt + 0.5 * g * dt * dt
        alive = ys <= WATER_Y + 2
        fade = max(0.0, 1.0 - dt / 45.0)
        foam_w = (6 + 40 * self.size) * min(1.0, dt / 6.0) * (0.3 + 0.7 * fade)
        c = cam.to_image((self.x, WATER_Y))
        axes = (max(1, int(foam_w * cam.ppu)), max(1, int(foam_w * 0.25 * cam.ppu)))
        cv2.ellipse(image, (int(c[0]), int(c[1])), axes, 0, 0, 360, (235, 235, 225), -1)
        if occluder is not None:
            cv2.ellipse(occluder, (int(c[0]), int(c[1])), axes, 0, 0, 360, 1, -1)
        for x, y, r, b in zip(xs[alive], ys[alive], p[alive, 3], p[alive, 4], strict=True):
            q = cam.to_image((x, y))
            rr = max(1, int(r * cam.ppu))
            col = (int(b), int(b), int(b * 0.95))
            cv2.circle(image, (int(q[0]), int(q[1])), rr, col, -1)
            if occluder is not None:
                cv2.circle(occluder, (int(q[0]), int(q[1])), rr, 1, -1)


class NoiseBank:
    """Pre-drawn Gaussian noise, cropped at random offsets (drawing fresh noise per frame costs
    more than rendering the frame)."""

    def __init__(self, rng: np.random.Generator, h: int, w: int):
        self.h, self.w = h, w
        self.bank = rng.normal(0, 1, (h + 32, w + 32, 3)).astype(np.float32)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        y, x = int(rng.integers(0, 32)), int(rng.integers(0, 32))
        return self.bank[y : y + self.h, x : x + self.w]


def motion_blur(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Linear blur along the camera's motion (dx, dy) in output pixels."""
    n = int(min(11, round(np.hypot(dx, dy))))
    if n < 2:
        return image
    k = np.zeros((n, n), np.float32)
    a = np.arctan2(dy, dx)
    c = (n - 1) / 2
    for i in range(n):
        r = i - c
        k[int(round(c + r * np.sin(a))), int(round(c + r * np.cos(a)))] = 1
    return cv2.filter2D(image, -1, k / k.sum())
