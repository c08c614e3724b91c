"""Segmenters that turn a tracker box into a pseudo human mask.

Protocol (like SAM's predictor, the expensive per-frame state is separate from the prompt):
``encode(frames) -> states`` (batched where the model allows), then
``segment(state, box, prev) -> (mask uint8 [H, W], score)`` where ``prev`` is the previous
frame's ``(state, mask)`` or ``None``.

- :class:`SamSegmenter`: the official ``segment_anything`` model; the box prompt (plus positive
  points sampled inside the previous mask when it overlaps the box), multimask output, the mask
  with the best predicted IoU, whose IoU is the score. Image embeddings are computed in batches
  (``torch.inference_mode``; half precision on CUDA).
- :class:`GrabCutSegmenter`: weight-free, GrabCut initialised from the box.
- :class:`FlowGrabCutSegmenter`: weight-free, the previous mask warped by dense optical flow (DIS)
  initialises GrabCut (sure / probable foreground and background), falling back to the box.
- :class:`MotionSegmenter`: weight-free baseline, motion-compensated frame difference in the box.
- ``background`` (:mod:`hmtools.annotation.background`): weight-free, median background of
  camera-compensated neighbour frames, colour-checked foreground in the box.
- ``blazepose`` (:mod:`hmtools.annotation.blazepose`): MediaPipe BlazePose's segmentation head
  run on the box region -- the default weight-free segmenter when its model is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from hmtools.annotation.trackers import Box, clip_box, compensate_camera
from hmtools.devices import check_device
from hmtools.errors import InputError

log = logging.getLogger(__name__)

SAM_DOWNLOAD = (
    "https://github.com/facebookresearch/segment-anything#model-checkpoints "
    "(sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth)"
)


class Segmenter(Protocol):
    name: str

    def encode(self, frames: list[np.ndarray]) -> list[object]: ...

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]: ...


def _roi(box: Box, w: int, h: int, grow: float = 0.25) -> tuple[int, int, int, int]:
    x, y, bw, bh = box
    gx, gy = bw * grow, bh * grow
    x0, y0 = int(max(0, x - gx)), int(max(0, y - gy))
    x1, y1 = int(min(w, x + bw + gx)), int(min(h, y + bh + gy))
    return x0, y0, max(x0 + 2, x1), max(y0 + 2, y1)


def _largest(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, np.uint8)
    keep = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    big = stats[keep[0], cv2.CC_STAT_AREA]
    out = np.zeros_like(mask, np.uint8)
    for k in keep:  # the largest part and any part at least half as big (two athletes)
        if stats[k, cv2.CC_STAT_AREA] >= 0.5 * big:
            out[lab == k] = 1
    return out


class GrabCutSegmenter:
    """GrabCut from the tracker box (``iterations`` rounds, on the box's region of interest)."""

    name = "grabcut"

    def __init__(self, iterations: int = 3):
        self.iterations = iterations

    def encode(self, frames: list[np.ndarray]) -> list[object]:
        return list(frames)

    def _grabcut(self, frame: np.ndarray, init: np.ndarray, rect: tuple | None) -> np.ndarray:
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        mode = cv2.GC_INIT_WITH_RECT if rect is not None else cv2.GC_INIT_WITH_MASK
        try:
            cv2.grabCut(frame, init, rect, bgd, fgd, self.iterations, mode)
        except cv2.error:
            return np.zeros(init.shape, np.uint8)
        return ((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)).astype(np.uint8)

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]:
        frame = np.asarray(state)
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = _roi(box, w, h)
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        bx, by, bw, bh = clip_box(box, w, h)
        rect = (int(bx - x0), int(by - y0), max(2, int(bw)), max(2, int(bh)))
        m = np.zeros(crop.shape[:2], np.uint8)
        m = self._grabcut(crop, m, rect)
        out = np.zeros((h, w), np.uint8)
        out[y0:y1, x0:x1] = _largest(m)
        fill = out.sum() / max(1.0, bw * bh)
        return out, float(np.clip(fill * 2, 0, 1))


class FlowGrabCutSegmenter(GrabCutSegmenter):
    """The previous mask, warped to this frame by DIS optical flow, initialises GrabCut."""

    name = "flow-grabcut"

    def __init__(self, iterations: int = 2):
        super().__init__(iterations)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def warp(self, prev_frame: np.ndarray, prev_mask: np.ndarray, frame: np.ndarray) -> np.ndarray:
        g0 = cv2.cvtColor(prev_frame, cv2.COLOR_BGR2GRAY)
        g1 = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        flow = self._dis.calc(g1, g0, None)  # for every pixel of frame: where it was before
        h, w = g1.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return (
            cv2.remap(
                prev_mask.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR
            )
            > 0.5
        )

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]:
        frame = np.asarray(state)
        if prev is None or prev[1] is None or not prev[1].any():
            return super().segment(frame, box, prev)
        h, w = frame.shape[:2]
        warped = self.warp(np.asarray(prev[0]), prev[1], frame).astype(np.uint8)
        if not warped.any():
            return super().segment(frame, box, prev)
        x0, y0, x1, y1 = _roi(box, w, h, grow=0.35)
        init = np.full((h, w), cv2.GC_BGD, np.uint8)
        init[y0:y1, x0:x1] = cv2.GC_PR_BGD
        k = max(3, int(0.02 * max(h, w)) | 1)
        dil = cv2.dilate(warped, np.ones((k, k), np.uint8))
        ero = cv2.erode(warped, np.ones((k, k), np.uint8))
        init[(dil > 0) & (init == cv2.GC_PR_BGD)] = cv2.GC_PR_FGD
        init[ero > 0] = cv2.GC_FGD
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        m = self._grabcut(crop, np.ascontiguousarray(init[y0:y1, x0:x1]), None)
        refined = np.zeros((h, w), np.uint8)
        refined[y0:y1, x0:x1] = m
        refined &= dil  # GrabCut may only move the boundary, not add far-away regions
        inter = np.logical_and(refined, warped).sum()
        union = np.logical_or(refined, warped).sum()
        agree = float(inter / union) if union else 0.0
        # colour evidence that contradicts the motion evidence is not trusted: keep the warp
        out = refined if agree >= 0.6 else warped
        return out.astype(np.uint8), agree


class MotionSegmenter:
    """Naive baseline: frame difference after compensating the camera's global motion, Otsu
    threshold inside the box, largest component."""

    name = "motion"

    def encode(self, frames: list[np.ndarray]) -> list[object]:
        return list(frames)

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]:
        frame = np.asarray(state)
        h, w = frame.shape[:2]
        out = np.zeros((h, w), np.uint8)
        if prev is None:
            return out, 0.0
        g1 = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        g0 = compensate_camera(cv2.cvtColor(np.asarray(prev[0]), cv2.COLOR_BGR2GRAY), g1)
        d = cv2.GaussianBlur(cv2.absdiff(g1, g0), (5, 5), 0)
        x0, y0, x1, y1 = _roi(box, w, h, grow=0.1)
        roi = d[y0:y1, x0:x1]
        if roi.size == 0 or roi.max() == 0:
            return out, 0.0
        _, m = cv2.threshold(roi, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
        out[y0:y1, x0:x1] = _largest(m)
        return out, 0.5


class SamSegmenter:
    """SAM (``segment_anything``) prompted by the tracker box (see module doc).

    ``overlap_encode`` (default: on CUDA only): ``segment_video`` runs the image encoder a chunk
    or two ahead in a worker thread while the tracker and the prompt decoder work through the
    current chunk. On a GPU the encoder then runs while the CPU tracks; on the CPU both share the
    same cores, and the thread measured 0.74-0.90x the inline throughput (small random SAM,
    256 px, 2 cores, ``benchmarks/pseudo_mask.py --parts b``), so there it is off."""

    name = "sam"

    def __init__(
        self,
        sam: object,
        device: str = "cpu",
        batch_size: int = 4,
        points_from_previous: int = 3,
        overlap_encode: bool | None = None,
    ):
        from segment_anything import SamPredictor

        self.device = check_device(device)
        self.overlap_encode = (
            self.device.type == "cuda" if overlap_encode is None else overlap_encode
        )
        self.half = self.device.type == "cuda"
        self.sam = sam.to(self.device).eval()  # type: ignore[attr-defined]
        if self.half:
            self.sam.image_encoder.half()
        self.predictor = SamPredictor(self.sam)
        self.batch_size = batch_size
        self.points_from_previous = points_from_previous
        self._rng = np.random.default_rng(0)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        model_type: str = "vit_b",
        device: str = "cpu",
        batch_size: int = 4,
    ) -> SamSegmenter:
        from segment_anything import sam_model_registry

        path = Path(checkpoint)
        if not path.exists():
            raise InputError(
                f"{path}: SAM checkpoint not found. Download it yourself from "
                f"{SAM_DOWNLOAD} (hmtools never downloads weights)"
            )
        if model_type not in sam_model_registry:
            raise InputError(f"unknown SAM model {model_type!r}: {', '.join(sam_model_registry)}")
        try:
            sam = sam_model_registry[model_type](checkpoint=str(path))
        except (RuntimeError, KeyError) as e:
            raise InputError(
                f"{path}: not a {model_type} SAM checkpoint ({str(e)[:200]})"
            ) from None
        return cls(sam, device, batch_size)

    def encode(self, frames: list[np.ndarray]) -> list[object]:
        """Image embeddings for ``frames`` (BGR), in batches of ``batch_size``."""
        import torch

        states: list[object] = []
        tr = self.predictor.transform
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                chunk = frames[i : i + self.batch_size]
                xs, sizes = [], []
                for f in chunk:
                    rgb = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
                    t = tr.apply_image(rgb)
                    x = torch.as_tensor(t, device=self.device).permute(2, 0, 1).contiguous()
                    xs.append(self.sam.preprocess(x[None].float())[0])
                    sizes.append((rgb.shape[:2], tuple(t.shape[:2])))
                batch = torch.stack(xs)
                if self.half:
                    batch = batch.half()
                feats = self.sam.image_encoder(batch).float()
                for k, (orig, inp) in enumerate(sizes):
                    states.append((feats[k : k + 1], orig, inp))
        return states

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]:
        import torch

        feats, orig, inp = state  # type: ignore[misc]
        p = self.predictor
        p.features, p.original_size, p.input_size, p.is_image_set = feats, orig, inp, True
        x, y, w, h = box
        kw: dict = {"box": np.array([x, y, x + w, y + h], np.float32)}
        if prev is not None and prev[1] is not None and self.points_from_previous:
            # the previous mask's pixels inside the box (pixel centres x0 <= px < x + w)
            x0, y0 = max(0, int(np.ceil(x))), max(0, int(np.ceil(y)))
            x1, y1 = int(np.ceil(x + w)), int(np.ceil(y + h))
            ys, xs = np.nonzero(prev[1][y0:y1, x0:x1])
            if len(xs) >= self.points_from_previous:
                pick = self._rng.choice(len(xs), self.points_from_previous, False)
                kw["point_coords"] = np.stack([xs[pick] + x0, ys[pick] + y0], 1).astype(np.float32)
                kw["point_labels"] = np.ones(self.points_from_previous, np.int64)
        with torch.inference_mode():
            masks, ious, _ = p.predict(multimask_output=True, **kw)
        k = int(np.argmax(ious))
        return masks[k].astype(np.uint8), float(ious[k])


def small_sam(image_size: int = 256, seed: int = 0) -> object:
    """A tiny SAM assembled from segment_anything's own modules with random weights: it runs the
    real code path (preprocessing, encoder, prompt encoder, mask decoder) in tests, quickly."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    embed = 64
    patch = 16
    grid = image_size // patch
    enc = ImageEncoderViT(
        img_size=image_size,
        patch_size=patch,
        embed_dim=96,
        depth=2,
        num_heads=2,
        out_chans=embed,
        window_size=4,
        global_attn_indexes=(1,),
    )
    prompt = PromptEncoder(
        embed_dim=embed,
        image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size),
        mask_in_chans=8,
    )
    dec = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=1, embedding_dim=embed, mlp_dim=128, num_heads=2),
        transformer_dim=embed,
        iou_head_depth=2,
        iou_head_hidden_dim=32,
    )
    return Sam(image_encoder=enc, prompt_encoder=prompt, mask_decoder=dec)


def _background() -> Segmenter:
    from hmtools.annotation.background import BackgroundSegmenter

    return BackgroundSegmenter()


def _blazepose() -> Segmenter:
    from hmtools.annotation.blazepose import BlazePoseSegmenter

    return BlazePoseSegmenter()


WEIGHT_FREE = {
    "blazepose": _blazepose,
    "background": _background,
    "flow-grabcut": FlowGrabCutSegmenter,
    "grabcut": GrabCutSegmenter,
    "motion": MotionSegmenter,
}


def default_weight_free() -> str:
    """``blazepose`` when its model is installed (the best in the comparison of
    benchmarks/pseudo_mask.py), else ``flow-grabcut``."""
    from hmtools.annotation.blazepose import model_path

    return "blazepose" if model_path() is not None else "flow-grabcut"


SEGMENTERS = ("sam", "sam2", *WEIGHT_FREE)


def default_segmenter(sam_checkpoint: object = None, sam2_checkpoint: object = None) -> str:
    """``sam2`` with a SAM 2 checkpoint, ``sam`` with a SAM one, else the weight-free default."""
    if sam2_checkpoint:
        return "sam2"
    return "sam" if sam_checkpoint else default_weight_free()


def make_segmenter(
    name: str,
    *,
    sam_checkpoint: str | None = None,
    sam_model: str = "vit_b",
    sam2_checkpoint: str | None = None,
    sam2_config: str | None = None,
    device: str = "cpu",
    batch_size: int = 4,
) -> Segmenter:
    """A segmenter by name (:data:`SEGMENTERS`). ``device`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``; ``cuda`` is this rank's GPU under torchrun) matters to SAM and SAM 2 only."""
    if name in ("sam", "sam2"):
        from hmtools.devices import resolve_device

        device = str(resolve_device(device))
    if name == "sam":
        if not sam_checkpoint:
            raise InputError(f"--segmenter sam needs --sam-checkpoint (download: {SAM_DOWNLOAD})")
        return SamSegmenter.from_checkpoint(sam_checkpoint, sam_model, device, batch_size)
    if name == "sam2":
        from hmtools.annotation.sam2_video import (
            SAM2_DOWNLOAD,
            Sam2VideoSegmenter,
            checkpoint_table,
        )

        if not sam2_checkpoint:
            raise InputError(
                f"--segmenter sam2 needs --sam2-checkpoint (download: {SAM2_DOWNLOAD}); the "
                f"official checkpoints and their configs:\n{checkpoint_table()}"
            )
        return Sam2VideoSegmenter.from_checkpoint(sam2_checkpoint, sam2_config, device)  # type: ignore[return-value]
    if name not in WEIGHT_FREE:
        raise InputError(f"unknown segmenter {name!r}: {', '.join(SEGMENTERS)}")
    return WEIGHT_FREE[name]()
