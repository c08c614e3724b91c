"""A person segmenter that needs no downloaded weights at run time: MediaPipe BlazePose's
segmentation head (``pose_landmark_full.tflite``), run with ``ai-edge-litert``.

The model file ships inside the PyPI wheel ``mediapipe==0.10.21``; hmtools does not install
mediapipe itself (it pins numpy<2), it only copies the model out of the wheel once, at install
time (``hmtools install-models``, run by ``scripts/setup.sh``), into ``<prefix>/share/hmtools/
models`` (or ``$HMTOOLS_MODELS``).

Per frame, a square region around the tracker box (1.35x its longer side) is warped to the
model's 256x256 input, the 256x256 segmentation logits are warped back, and pixels with
probability > 0.5 inside the region form the mask; the model's pose-presence flag is the score.
When it sees nobody there, a 1.5x wider region is tried once (see ``segment``).
Below ``min_presence`` the model doubts there is a person (a blurred, tucked or upside-down
diver often scores low while its mask is still usable): the mask is kept only where the tracker
agrees -- the parts touching the tracker box, if they fill a fair share of it and their box
overlaps it (:func:`agreeing_parts`) -- and where the segmentation itself is confident (the
harmonic mean of its pixels' person probabilities >= ``min_confidence``; the head paints a blob
of ~0.8 into an empty or noise image); else it is empty (nobody in the box, e.g. under water).
Either way the low presence stays the frame's score, so annotators see these frames first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from hmtools.annotation.trackers import Box, box_iou, clip_box, mask_box
from hmtools.errors import InputError

MODEL_FILE = "pose_landmark_full.tflite"
WHEEL = "mediapipe==0.10.21"
_IN_WHEEL = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"


def models_dir() -> Path:
    env = os.environ.get("HMTOOLS_MODELS")
    return Path(env) if env else Path(sys.prefix) / "share" / "hmtools" / "models"


def model_path() -> Path | None:
    p = models_dir() / MODEL_FILE
    return p if p.exists() else None


def install_model(wheel: str | os.PathLike | None = None) -> Path:
    """Copy the BlazePose model out of the mediapipe wheel (downloaded with pip from the package
    index unless ``wheel`` is a local .whl) into :func:`models_dir`."""
    dest = models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            r = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                raise InputError(f"pip could not fetch {WHEEL}: {r.stderr.strip()[-400:]}")
            wheel = next(Path(tmp).glob("mediapipe-*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(_IN_WHEEL) as src:
            part = dest / f".{MODEL_FILE}.tmp"
            with open(part, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(part, dest / MODEL_FILE)
    return dest / MODEL_FILE


class BlazePoseSegmenter:
    """See module doc."""

    name = "blazepose"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        grow: float = 1.35,
        wider: tuple[float, ...] = (1.5,),
        threads: int = 2,
        min_presence: float = 0.5,
        min_fill: float = 0.15,
        min_box_iou: float = 0.5,
        min_confidence: float = 0.85,
    ):
        p = Path(path) if path else model_path()
        if p is None or not p.exists():
            raise InputError(
                f"the BlazePose model is not installed in {models_dir()}: run "
                "`hmtools install-models` (copies it out of the mediapipe wheel)"
            )
        from ai_edge_litert.interpreter import Interpreter

        self._it = Interpreter(model_path=str(p), num_threads=threads)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        outs = {d["name"]: d for d in self._it.get_output_details()}
        self._seg = next(
            d["index"] for d in outs.values() if tuple(d["shape"][1:]) == (256, 256, 1)
        )
        self._flag = next(d["index"] for d in outs.values() if tuple(d["shape"]) == (1, 1))
        self.grow, self.wider = grow, tuple(wider)
        self.min_presence = min_presence
        self.min_fill, self.min_box_iou = min_fill, min_box_iou
        self.min_confidence = min_confidence

    def encode(self, frames: list[np.ndarray]) -> list[object]:
        return list(frames)

    def _run(
        self, frame: np.ndarray, box: Box, grow: float
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """(mask, presence, the model's 256 x 256 segmentation logits of the region)."""
        h, w = frame.shape[:2]
        x, y, bw, bh = box
        cx, cy, side = x + bw / 2, y + bh / 2, max(bw, bh, 8.0) * grow
        k = 256 / side
        M = np.array([[k, 0, 128 - cx * k], [0, k, 128 - cy * k]], np.float64)
        crop = cv2.warpAffine(frame, M, (256, 256), borderMode=cv2.BORDER_REPLICATE)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
        self._it.set_tensor(self._in, rgb)
        self._it.invoke()
        logits = self._it.get_tensor(self._seg)[0, :, :, 0]
        presence = float(np.clip(self._it.get_tensor(self._flag)[0, 0], 0.0, 1.0))
        # warp the logits back onto the region only (+1 px for the interpolation): outside it
        # every pixel is the border value; at 720p this is ~25x fewer pixels than the frame
        x0, y0 = max(0, int(np.floor(cx - side / 2)) - 1), max(0, int(np.floor(cy - side / 2)) - 1)
        x1, y1 = min(w, int(np.ceil(cx + side / 2)) + 2), min(h, int(np.ceil(cy + side / 2)) + 2)
        mask = np.zeros((h, w), np.uint8)
        if x1 > x0 and y1 > y0:
            Mr = M.copy()
            Mr[:, 2] += M[:, :2] @ np.array([x0, y0], np.float64)  # region -> model input
            back = cv2.warpAffine(
                logits,
                cv2.invertAffineTransform(Mr),
                (x1 - x0, y1 - y0),
                flags=cv2.INTER_LINEAR,
                borderValue=-30.0,
            )
            mask[y0:y1, x0:x1] = back > 0
        return mask, presence, logits  # get_tensor returns a copy

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]:
        """Segment in the box's region; when the model sees nobody there, look again in regions
        ``wider`` times as wide (default once, 1.5x: the tracker may have fallen behind a fast
        dive). Not wider than that: in a region 2-3x as wide (the first versions) the athlete is
        a quarter of the model's input or less, and the model "finds" the person in spectators or
        paints a standing body onto the board below an upside-down diver -- masks that then
        drag the tracker off. Mean IoU, tracker from the first true box, 2x and 3x -> 1.5x:
        synthetic dives at 256 px (56 videos) 0.409 -> 0.461, at 720p (24) 0.428 -> 0.455, DAVIS
        dance-twirl 0.838 -> 0.838; box IoU on the hand-boxed real FineDiving frames (finder, no
        prompts) 0.70 -> 0.74. No second region at all: 0.456 at 256 px, DAVIS 0.838, real 0.55;
        1.25x: 0.465, 0.448 at 720p, real 0.73 (``benchmarks/pseudo_mask.py``)."""
        frame = np.asarray(state)
        best = (np.zeros(frame.shape[:2], np.uint8), 0.0, np.full((256, 256), -30.0, np.float32))
        for grow in (self.grow, *(self.grow * k for k in self.wider)):
            run = self._run(frame, box, grow)
            if run[1] > best[1]:
                best = run
            if run[1] >= self.min_presence:
                break
        mask, presence, logits = best
        if presence >= self.min_presence:
            return mask, presence
        if _confidence(logits) < self.min_confidence:  # nobody: the model only guesses
            return np.zeros_like(mask), presence
        return agreeing_parts(mask, box, self.min_fill, self.min_box_iou), presence


def _confidence(logits: np.ndarray) -> float:
    """Harmonic mean of the person probabilities ``1 / (1 + exp(-logit))`` of the pixels the model
    calls person (~0.8 on an empty or noise image, ~0.89-0.96 on people; the harmonic mean
    weighs the doubtful pixels most); 0 when there are none. Only needed below the presence
    threshold."""
    fg = logits > 0
    if not fg.any():
        return 0.0
    return float(1.0 / (1.0 + np.exp(-np.clip(logits[fg], -30, 30))).mean())


def agreeing_parts(
    mask: np.ndarray, box: Box, min_fill: float = 0.15, min_box_iou: float = 0.5
) -> np.ndarray:
    """The connected parts of ``mask`` that touch ``box``, if together they cover at least
    ``min_fill`` of the box and their bounding box overlaps it with IoU >= ``min_box_iou``;
    otherwise an empty mask."""
    h, w = mask.shape
    x, y, bw, bh = clip_box(box, w, h)
    x0, y0, x1, y1 = int(x), int(y), int(np.ceil(x + bw)), int(np.ceil(y + bh))
    out = np.zeros((h, w), np.uint8)
    mb = mask_box(mask)
    if mb is not None:  # label the parts inside the mask's own box only (a region, not 720p)
        mx, my, mw, mh = (int(v) for v in mb)
        crop = mask[my : my + mh, mx : mx + mw].astype(np.uint8)
        _, lab = cv2.connectedComponents(crop, connectivity=8)
        touching = np.unique(
            lab[max(0, y0 - my) : max(0, y1 - my), max(0, x0 - mx) : max(0, x1 - mx)]
        )
        out[my : my + mh, mx : mx + mw] = np.isin(lab, touching[touching > 0])
        mb = mask_box(out)
    if (
        mb is None
        or out[y0:y1, x0:x1].sum() < min_fill * bw * bh
        or box_iou(mb, (x, y, bw, bh)) < min_box_iou
    ):
        return np.zeros_like(out)
    return out
