"""Synthetic diving videos with exact ground truth, written in the FineDiving layout.

``generate(OUT, videos=N, seed=S)`` writes exactly::

    OUT/frames/<video_name>/<clip_idx>/<frame:05d>.jpg   N annotation keys
    OUT/Annotations/  the six FineDiving pickles in the official schema (splits included)
    OUT/Synth-HM.h5   the figure's exact masks as the ``gtm`` layer
    OUT/synth_factors.csv   the hidden execution factors of each clip (for benchmarks)

Each clip is one dive: take-off from a board/platform (step 1), flight with somersaults in the
dive's position and, for twisting dives, a twist phase (step 2, 3), entry with splash (last
step). The judges' scores are a deterministic function of four visible execution factors plus
judge noise, combined like the real rules (drop the extremes, sum three, times difficulty):

- ``tightness``: how closed the pike/tuck is in flight (and legs together);
- ``entry``: how vertical the body is at entry (rotation completeness);
- ``splash``: how small the splash is;
- ``height``: how high the take-off carries the diver.

The factors are drawn independently and weigh the same, so none explains much more than a
quarter of the execution score. Clips vary venue, camera pan/zoom, lighting, noise and motion
blur; a fifth are synchronised (two athletes, one union mask); distractor people stand and move
on the deck and in the stands.

Rendering follows the physics a segmenter sees in real footage: the camera's pan blurs the static
venue and bystanders, not the athlete it follows; in flight the athlete is blurred by its own
motion relative to the camera (a sharp pose at ``FLIGHT_ALPHA`` plus two exposure-end ghosts at
``GHOST_ALPHA``). The ground-truth mask is what an annotator would paint: the pixels where the
athlete dominates the colour (combined opacity >= 0.5), so a lone ghost is background and the
overlap of the sharp pose or of two ghosts is athlete.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import pickle
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from hmtools.datasets.figure import Pose, draw_figure, joints
from hmtools.datasets.scene import (
    WATER_Y,
    Camera,
    NoiseBank,
    Splash,
    Venue,
    motion_blur,
    render_venue,
)
from hmtools.errors import InputError
from hmtools.masks import ORIGIN_GROUND_TRUTH, LayerData, StoreWriter, rle
from hmtools.progress import progress_bar

log = logging.getLogger(__name__)

#: The official sub-action vocabulary of FineDiving (code -> name).
SUB_ACTION_TYPES: dict[int, str] = {
    1: "Forward",
    2: "Back",
    3: "Reverse",
    4: "Inward",
    5: "Arm.Forward",
    6: "Arm.Back",
    7: "Arm.Reverse",
    8: "1 Som.Straight",
    9: "1.5 Soms.Straight",
    10: "2 Soms.Straight",
    11: "2.5 Soms.Straight",
    12: "1 Som.Pike",
    13: "1.5 Soms.Pike",
    14: "2 Soms.Pike",
    15: "2.5 Soms.Pike",
    16: "3 Soms.Pike",
    17: "3.5 Soms.Pike",
    18: "4 Soms.Pike",
    19: "4.5 Soms.Pike",
    20: "1 Som.Tuck",
    21: "1.5 Soms.Tuck",
    22: "2 Soms.Tuck",
    23: "2.5 Soms.Tuck",
    24: "3 Soms.Tuck",
    25: "3.5 Soms.Tuck",
    26: "4 Soms.Tuck",
    27: "4.5 Soms.Tuck",
    28: "5.5 Soms.Tuck",
    29: "0.5 Twist",
    30: "1 Twist",
    31: "1.5 Twists",
    32: "2 Twists",
    33: "2.5 Twists",
    34: "3 Twists",
    35: "3.5 Twists",
    36: "Entry",
    37: "0.5 Som.Pike",
    38: "Background",
    39: "0.5 Som.Straight",
    40: "0.5 Som.Tuck",
    41: "4 Twists",
    42: "4.5 Twists",
}


@dataclass(frozen=True)
class DiveType:
    """A dive number: group (1 forward, 2 back, 3 reverse, 4 inward), half somersaults,
    position (a straight, b pike, c tuck), half twists, difficulty, and its sub-action codes."""

    number: str
    group: int
    half_soms: int
    position: str
    half_twists: int
    difficulty: float
    labels: tuple[int, ...]  # take-off, somersault, [twist], entry


DIVE_TYPES: tuple[DiveType, ...] = (
    DiveType("105b", 1, 5, "b", 0, 2.8, (1, 15, 36)),
    DiveType("107c", 1, 7, "c", 0, 3.2, (1, 25, 36)),
    DiveType("205b", 2, 5, "b", 0, 3.0, (2, 15, 36)),
    DiveType("207c", 2, 7, "c", 0, 3.3, (2, 25, 36)),
    DiveType("305c", 3, 5, "c", 0, 3.0, (3, 23, 36)),
    DiveType("405b", 4, 5, "b", 0, 3.0, (4, 15, 36)),
    DiveType("5152b", 1, 5, "b", 2, 3.1, (1, 15, 30, 36)),
    DiveType("5253b", 2, 5, "b", 3, 3.2, (2, 15, 31, 36)),
)
FACTORS = ("tightness", "entry", "splash", "height")
_GROUP_LOOK = {1: (1, 1), 2: (-1, -1), 3: (1, -1), 4: (-1, 1)}  # (facing, rotation sign)


@dataclass
class ClipSpec:
    """Everything random about one clip, drawn up front from its own seed."""

    key: tuple[str, int]
    dive: DiveType
    factors: dict[str, float]  # each in [0, 1], 1 = best execution
    athletes: int
    num_frames: int
    start_frame: int
    judges: int
    seed: int
    venue_seed: int
    platform_y: float


def judge_scores(factors: dict[str, float], judges: int, rng: np.random.Generator) -> list[float]:
    """Judges' execution marks (0-10 in half points): the mean factor quality plus noise."""
    q = float(np.mean([factors[f] for f in FACTORS]))
    base = 10 * (0.42 + 0.52 * q)
    marks = np.clip(np.round((base + rng.normal(0, 0.3, judges)) * 2) / 2, 0, 10)
    return [float(m) for m in marks]


def final_score(marks: list[float], difficulty: float) -> float:
    """Drop the extremes (7 judges: two high, two low; 5: one each; 3: none), sum the middle
    three, multiply by the degree of difficulty -- the FINA rule for individual events."""
    s = sorted(marks)
    drop = (len(s) - 3) // 2
    middle = s[drop : len(s) - drop] if drop else s
    return round(sum(middle[:3]) * difficulty, 2)


# ----------------------------------------------------------------------------------------------
# the dive program: pose and position of an athlete at frame t


@dataclass
class AthleteState:
    hip: np.ndarray  # world position of the hip
    theta: float  # somersault angle (deg)
    twist: float
    pose: Pose
    label: int


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


class DiveProgram:
    """The trajectory of one dive, parameterised by the clip's spec (units: reference px)."""

    def __init__(
        self, spec: ClipSpec, venue: Venue, rng: np.random.Generator, x_offset: float = 0.0
    ):
        self.spec = spec
        d = spec.dive
        f = spec.factors
        T = spec.num_frames
        self.L = float(rng.uniform(62, 78))  # body length
        self.facing, self.rot_sign = _GROUP_LOOK[d.group]
        self.t_takeoff = int(round(T * rng.uniform(0.14, 0.24)))
        self.t_entry = int(round(T * rng.uniform(0.70, 0.78)))
        flight = self.t_entry - self.t_takeoff
        self.t_twist = (self.t_takeoff + int(round(flight * 0.55))) if d.half_twists else None
        self.x0 = venue.platform_edge - 0.12 * self.L + x_offset
        self.y_stand = venue.platform_y - 0.5 * self.L
        # ballistic flight: peak above take-off set by the height factor, lands at the water
        P = self.L * (0.25 + 0.9 * f["height"])
        D = (WATER_Y - 0.3 * self.L) - self.y_stand
        Fr = float(flight)
        u = np.sqrt(2.0) * (np.sqrt(P) + np.sqrt(P + D)) / Fr
        self.g = u * u
        self.vy = np.sqrt(2 * self.g * P)
        self.vx = self.L * rng.uniform(0.6, 1.2) / Fr
        # rotation: the dive's half somersaults plus the (signed) entry error
        err = (1 - f["entry"]) * 38.0 * (1 if rng.random() < 0.5 else -1)
        self.theta_total = d.half_soms * 180.0 + err
        tight = 0.5 + 0.5 * f["tightness"]
        pos = {
            "b": Pose(hip=150 * tight, knee=(1 - f["tightness"]) * 30),
            "c": Pose(hip=125 * tight, knee=145 * tight),
            "a": Pose(hip=10 * (1 - f["tightness"])),
        }[d.position]
        pos.shoulder = 40 if d.position != "a" else 170
        pos.elbow = 60 if d.position == "c" else 10
        pos.spread = (1 - f["tightness"]) * 30
        self.flight_pose = pos
        self.entry_pose = Pose(
            hip=0, knee=0, shoulder=178, elbow=0, spread=(1 - f["tightness"]) * 10
        )

    def state(self, t: float) -> AthleteState:
        d = self.spec.dive
        labels = d.labels
        if t < self.t_takeoff:  # stand, crouch, swing arms, jump
            u = t / max(1, self.t_takeoff)
            crouch = np.sin(np.pi * _smooth((u - 0.3) / 0.6)) if u > 0.3 else 0.0
            pose = Pose(hip=35 * crouch, knee=60 * crouch, shoulder=30 + 150 * _smooth(u), elbow=10)
            hip = np.array([self.x0, self.y_stand + 0.15 * self.L * crouch])
            return AthleteState(hip, 8 * crouch * self.rot_sign, 0.0, pose, labels[0])
        if t < self.t_entry:
            s = t - self.t_takeoff
            F = self.t_entry - self.t_takeoff
            hip = np.array(
                [self.x0 + self.vx * s, self.y_stand - self.vy * s + 0.5 * self.g * s * s]
            )
            w = s / F
            theta = self.theta_total * (w - np.sin(2 * np.pi * w) / (2 * np.pi))
            # into the position quickly, open before entry (or for the twist)
            close = _smooth(w / 0.15)
            open_at = 0.82 if self.t_twist is None else (self.t_twist - self.t_takeoff) / F - 0.05
            opened = _smooth((w - open_at) / 0.1)
            amount = close * (1 - opened)
            pose = _lerp_pose(self.entry_pose, self.flight_pose, amount)
            twist = 0.0
            label = labels[1]
            if self.t_twist is not None and t >= self.t_twist:
                tw = (t - self.t_twist) / max(1, self.t_entry - self.t_twist)
                twist = d.half_twists * 180.0 * _smooth(tw / 0.9)
                label = labels[2]
                pose = _lerp_pose(
                    self.entry_pose, Pose(shoulder=20, elbow=120), 1 - _smooth(tw / 0.9)
                )
            return AthleteState(hip, theta * self.rot_sign, twist, pose, label)
        # entry: keep going down at the entry speed, slowing in the water
        s = t - self.t_entry
        F = self.t_entry - self.t_takeoff
        v_end = -self.vy + self.g * F
        y_e = self.y_stand - self.vy * F + 0.5 * self.g * F * F
        hip = np.array([self.x0 + self.vx * F, y_e + v_end * s * (1 - min(0.5, s / 40))])
        twist = self.spec.dive.half_twists * 180.0
        return AthleteState(
            hip, self.theta_total * self.rot_sign, twist, self.entry_pose, labels[-1]
        )


def _lerp_pose(a: Pose, b: Pose, w: float) -> Pose:
    return Pose(
        *(x + (y - x) * w for x, y in zip(asdict(a).values(), asdict(b).values(), strict=True))
    )


# ----------------------------------------------------------------------------------------------
# rendering one clip


def _distractors(rng: np.random.Generator, venue: Venue) -> list[dict]:
    people = []
    for _ in range(int(rng.integers(2, 6))):
        on_deck = rng.random() < 0.6
        x = rng.uniform(venue.platform_edge + 150, 1050) if on_deck else rng.uniform(450, 1050)
        y = WATER_Y - 32 if on_deck else rng.uniform(250, 600)
        people.append(
            {
                "x": x,
                "y": y,
                "L": rng.uniform(55, 70) if on_deck else rng.uniform(25, 40),
                "walk": rng.uniform(-1.2, 1.2) if on_deck and rng.random() < 0.5 else 0.0,
                "wave": rng.random() < 0.5,
                "phase": rng.uniform(0, 6.28),
                "skin": tuple(
                    int(c)
                    for c in (rng.integers(70, 150), rng.integers(100, 180), rng.integers(140, 230))
                ),
                "suit": tuple(int(c) for c in rng.integers(20, 230, 3)),
                "facing": 1 if rng.random() < 0.5 else -1,
            }
        )
    return people


FLIGHT_ALPHA = 0.75  # the sharp in-flight pose's opacity (the rest is motion blur)
GHOST_ALPHA = 0.45  # each exposure-end ghost's opacity


def render_clip(spec: ClipSpec, height: int = 256, width: int | None = None):
    """Yield ``(frame BGR uint8 [H,W,3], mask uint8 [H,W], label)`` for every frame of a clip."""
    width = width or int(round(height * 455 / 256))
    out_scale = height / 256.0
    rng = np.random.default_rng(spec.seed)
    venue = render_venue(np.random.default_rng(spec.venue_seed), out_scale, spec.platform_y)
    athletes = []
    for k in range(spec.athletes):
        off = 0.0 if spec.athletes == 1 else (-0.45 if k == 0 else 0.45) * 70
        prog = DiveProgram(spec, venue, np.random.default_rng(spec.seed + 7919 * (k + 1)), off)
        lag = 0.0 if k == 0 else rng.uniform(-1.5, 1.5)  # synchronisation error
        skin = tuple(
            int(c) for c in (rng.integers(90, 160), rng.integers(120, 190), rng.integers(170, 240))
        )
        suit = tuple(int(c) for c in rng.integers(10, 200, 3))
        athletes.append((prog, lag, skin, suit))
    people = _distractors(rng, venue)
    noise = NoiseBank(rng, height, width)
    sigma = rng.uniform(2.0, 7.0)
    gain0, gain_amp, gain_period = (
        rng.uniform(0.8, 1.15),
        rng.uniform(0.03, 0.15),
        rng.uniform(20, 80),
    )
    tint = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    zoom0, zoom_amp = rng.uniform(0.9, 1.3), rng.uniform(0.0, 0.2)
    cam_offset = np.array([rng.uniform(-60, 60), rng.uniform(-30, 30)])
    first = athletes[0][0]
    cam_c = first.state(0).hip + cam_offset
    splash = None
    prev_c = None
    for t in range(spec.num_frames):
        lead = first.state(t)
        zoom = zoom0 * (1 + zoom_amp * np.sin(2 * np.pi * t / spec.num_frames))
        cam_c = cam_c + 0.3 * (lead.hip + cam_offset - cam_c)  # the operator follows, lagging
        cam = Camera(cam_c.copy(), zoom, width, height, out_scale)
        cam.clamp()
        cam_c = cam.center.copy()
        # the camera's image motion this frame (px/frame): it blurs what is static in the world,
        # not the athlete it follows (whose blur is its motion relative to the camera, below)
        pan = (cam.center - prev_c) * cam.ppu if prev_c is not None else np.zeros(2)
        prev_c = cam.center
        frame = cam.render(venue)
        for p in people:
            x = p["x"] + p["walk"] * t
            wave = 90 + 70 * np.sin(0.3 * t + p["phase"]) if p["wave"] else 10
            pose = Pose(shoulder=wave, elbow=20, hip=5 * np.sin(0.4 * t) if p["walk"] else 0)
            L = p["L"] * cam.ppu
            c = cam.to_image((x, p["y"]))
            draw_figure(
                frame,
                None,
                joints(pose, (c[0], c[1]), L, 0.0, 0.0, p["facing"]),
                L,
                skin=p["skin"],
                suit=p["suit"],
                facing=p["facing"],
            )
        frame = motion_blur(frame, -pan[0], -pan[1])
        mask = np.zeros((height, width), np.uint8)
        label = lead.label
        for prog, lag, skin, suit in athletes:
            tt = max(0.0, t + lag)
            st = prog.state(tt)
            L = prog.L * cam.ppu
            in_flight = prog.t_takeoff <= tt < prog.t_entry
            # the ground-truth mask is where the athlete dominates the pixel's colour: their
            # combined opacity (the sharp pose and the motion-blur ghosts) is at least 0.5
            clear = np.ones(mask.shape, np.float32)  # product of (1 - alpha) over layers
            if in_flight:  # motion blur (rotation, fall against the panning camera): ghosts
                for dt in (-0.35, 0.35):  # at the exposure ends, where they are in the image
                    g = prog.state(tt + dt)
                    c = cam.to_image(g.hip) - dt * pan
                    gm = np.zeros_like(mask)
                    draw_figure(
                        frame,
                        gm,
                        joints(g.pose, (c[0], c[1]), L, g.theta, g.twist, prog.facing),
                        L,
                        skin=skin,
                        suit=suit,
                        twist=g.twist,
                        facing=prog.facing,
                        alpha=GHOST_ALPHA,
                    )
                    clear *= 1 - GHOST_ALPHA * gm
            c = cam.to_image(st.hip)
            j = joints(st.pose, (c[0], c[1]), L, st.theta, st.twist, prog.facing)
            m = np.zeros_like(mask)
            alpha = FLIGHT_ALPHA if in_flight else 1.0
            draw_figure(
                frame,
                m,
                j,
                L,
                skin=skin,
                suit=suit,
                twist=st.twist,
                facing=prog.facing,
                alpha=alpha,
            )
            clear *= 1 - alpha * m
            mask |= (clear <= 0.5).astype(np.uint8)
        # water hides what is below the surface (redraw the background there)
        wy = int(np.ceil(cam.to_image((0, WATER_Y))[1]))
        if wy < height:
            below = motion_blur(cam.render(venue), -pan[0], -pan[1])[max(0, wy) :]
            frame[max(0, wy) :] = below
            mask[max(0, wy) :] = 0
        if splash is None and t >= first.t_entry:
            splash = Splash.create(
                rng, float(first.state(first.t_entry).hip[0]), 1 - spec.factors["splash"], t
            )
        if splash is not None:
            occ = np.zeros_like(mask)
            splash.draw(frame, occ, cam, t)
            mask[occ > 0] = 0
        gain = gain0 * (1 + gain_amp * np.sin(2 * np.pi * t / gain_period))
        f = frame.astype(np.float32) * (gain * tint) + noise.sample(rng) * sigma
        yield np.clip(f, 0, 255).astype(np.uint8), mask, label


# ----------------------------------------------------------------------------------------------
# the dataset


def make_specs(videos: int, seed: int) -> list[ClipSpec]:
    """Draw the clip specs: competitions of up to 10 clips sharing a venue and event."""
    if videos < 1:
        raise InputError("--videos must be at least 1")
    rng = np.random.default_rng(seed)
    n_types = max(1, min(len(DIVE_TYPES), videos // 4))
    types = list(rng.permutation(len(DIVE_TYPES))[:n_types])
    seeds = np.random.SeedSequence(seed).spawn(videos)
    specs: list[ClipSpec] = []
    comp = -1
    for i in range(videos):
        if i % 10 == 0:
            comp += 1
            sync = rng.random() < 0.2
            event = "10m" if rng.random() < 0.5 else "3m"
            gender = "Men" if rng.random() < 0.5 else "Women"
            name = f"SynthDiving{2020 + comp % 6}_{gender}{event}{'Synchronised' if sync else ''}_final_r{comp + 1}"
            venue_seed = int(rng.integers(2**31))
            platform_y = rng.uniform(150, 260) if event == "10m" else rng.uniform(380, 470)
        dive = DIVE_TYPES[types[i % n_types] if i < n_types else types[int(rng.integers(n_types))]]
        factors = {f: float(rng.uniform(0, 1)) for f in FACTORS}
        specs.append(
            ClipSpec(
                key=(name, i % 10),
                dive=dive,
                factors=factors,
                athletes=2 if sync else 1,
                num_frames=int(rng.integers(90, 121)),
                start_frame=int(rng.integers(0, 3000)),
                judges=int(rng.choice([3, 5, 7], p=[0.15, 0.35, 0.5])),
                seed=int(seeds[i].generate_state(1)[0]),
                venue_seed=venue_seed,
                platform_y=float(platform_y),
            )
        )
    return specs


def _render_to_disk(args: tuple[ClipSpec, Path, int]) -> dict:
    spec, frames_root, height = args
    d = frames_root / spec.key[0] / str(spec.key[1])
    d.mkdir(parents=True, exist_ok=True)
    rles, labels = [], []
    h = w = 0
    for t, (frame, mask, label) in enumerate(render_clip(spec, height)):
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        (d / f"{spec.start_frame + t:05d}.jpg").write_bytes(buf.tobytes())
        rles.append(rle.encode(mask)[0])
        labels.append(label)
        h, w = mask.shape
    return {"key": spec.key, "rles": rles, "labels": labels, "height": h, "width": w}


def _transitions(labels: list[int]) -> np.ndarray:
    """FineDiving's steps_transit_frames: the last frame index of every step but the last."""
    return np.array([i for i in range(len(labels) - 1) if labels[i] != labels[i + 1]], np.int64)


def _split(
    specs: list[ClipSpec], rng: np.random.Generator, test_share: float = 0.25
) -> tuple[list, list]:
    """``test_share`` of each dive number's clips (rounded) to the test split, the rest to
    training; every test dive number keeps training exemplars."""
    train, test = [], []
    by_type: dict[str, list] = {}
    for s in specs:
        by_type.setdefault(s.dive.number, []).append(s.key)
    for keys in by_type.values():
        keys = [keys[i] for i in rng.permutation(len(keys))]
        n_test = min(len(keys) - 1, int(len(keys) * test_share + 0.5))
        test += keys[:n_test]
        train += keys[n_test:]
    return train, test


def generate(
    out: str | os.PathLike,
    videos: int,
    seed: int = 0,
    *,
    height: int = 256,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    test_share: float = 0.25,
) -> Path:
    """Write a synthetic FineDiving-layout dataset to ``out`` (see module doc). Atomic: built in
    a temporary folder inside ``out`` and moved into place at the end. ``test_share``: the
    share of each dive number's clips in the test split (FineDiving's is ~0.25; more test clips
    narrow the interval of a held-out rho, ~0.5 wide at 40 clips)."""
    if not 0.0 <= test_share < 1.0:
        raise InputError(f"--test-share must be in [0, 1), not {test_share}")
    out = Path(out)
    targets = [out / "frames", out / "Annotations", out / "Synth-HM.h5", out / "synth_factors.csv"]
    if any(t.exists() for t in targets) and not overwrite:
        raise InputError(f"{out} already holds a synthetic dataset: pass --overwrite")
    specs = make_specs(videos, seed)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=out))
    try:
        workers = workers or min(len(specs), os.cpu_count() or 1)
        jobs = [(s, tmp / "frames", height) for s in specs]
        if workers > 1:
            # spawned, not forked: a fork copies whatever native state the parent holds (a
            # LiteRT interpreter's destructor crashed a forked child)
            with ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            ) as ex:
                results = list(
                    progress_bar(
                        ex.map(_render_to_disk, jobs),
                        total=len(jobs),
                        desc="synth",
                        unit="video",
                        disable=not progress,
                    )
                )
        else:
            results = [
                _render_to_disk(j)
                for j in progress_bar(jobs, desc="synth", unit="video", disable=not progress)
            ]
        _write_annotations(tmp, specs, results, seed, test_share)
        with StoreWriter(tmp / "Synth-HM.h5", name="Synth-HM") as w:
            for spec, res in zip(specs, results, strict=True):
                w.add_video(
                    spec.key,
                    height=res["height"],
                    width=res["width"],
                    num_frames=spec.num_frames,
                    action_type=spec.dive.number,
                    frames_dir=f"frames/{spec.key[0]}/{spec.key[1]}",
                    frame_pattern="{:05d}.jpg",
                )
                frames = np.arange(spec.start_frame, spec.start_frame + spec.num_frames)
                w.write_layer(
                    spec.key,
                    "gtm",
                    LayerData.from_rles(
                        frames, res["rles"], res["height"], res["width"], None, ORIGIN_GROUND_TRUTH
                    ),
                )
        for t in targets:
            if t.is_dir():
                shutil.rmtree(t)
            elif t.exists():
                t.unlink()
            os.replace(tmp / t.name, t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _dump(obj: object, path: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)


def _write_annotations(
    root: Path, specs: list[ClipSpec], results: list[dict], seed: int, test_share: float = 0.25
) -> None:
    ann = root / "Annotations"
    ann.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    coarse, fine, aqa = {}, {}, {}
    rows = []
    for spec, res in zip(specs, results, strict=True):
        marks = judge_scores(spec.factors, spec.judges, np.random.default_rng(spec.seed + 1))
        score = final_score(marks, spec.dive.difficulty)
        labels = np.array(res["labels"], np.int64)
        trans = _transitions(res["labels"])
        coarse[spec.key] = {
            "action_type": spec.dive.number,
            "start_frame": spec.start_frame,
            "end_frame": spec.start_frame + spec.num_frames - 1,
            "dive_score": score,
            "difficulty": spec.dive.difficulty,
            "judge_scores": marks,
        }
        fine[spec.key] = {
            "action_type": spec.dive.number,
            "dive_score": score,
            "difficulty": spec.dive.difficulty,
            "steps_transit_frames": trans,
            "frames_labels": labels,
            "sub-action_types": {np.int64(c): SUB_ACTION_TYPES[c] for c in spec.dive.labels},
        }
        aqa[spec.key] = [spec.dive.number, score, spec.dive.difficulty, trans, labels]
        rows.append(
            {
                "video_name": spec.key[0],
                "clip_idx": spec.key[1],
                "action_type": spec.dive.number,
                "athletes": spec.athletes,
                **{f: round(v, 4) for f, v in spec.factors.items()},
                "judges": spec.judges,
                "final_score": score,
            }
        )
    train, test = _split(specs, rng, test_share)
    _dump(coarse, ann / "FineDiving_coarse_annotation.pkl")
    _dump(fine, ann / "FineDiving_fine-grained_annotation.pkl")
    _dump(aqa, ann / "fine-grained_annotation_aqa.pkl")
    _dump(dict(SUB_ACTION_TYPES), ann / "Sub_action_Types_Table.pkl")
    _dump(train, ann / "train_split.pkl")
    _dump(test, ann / "test_split.pkl")
    with open(root / "synth_factors.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
