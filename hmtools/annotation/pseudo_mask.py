"""``hmtools pseudo-mask``: a pseudo human mask for every frame of every video.

Per video: a first-frame box (prompts file, or the automatic athlete finder) starts the tracker;
every frame, the tracker's box prompts the segmenter and the new mask corrects the tracker.
Videos are committed one by one to ``<out>.parts/<video_key>.h5`` (atomic writes), so a killed
run loses at most the video in progress and ``--resume`` skips finished ones; at the end the parts
become the ``pm`` layer of ``<out>`` (atomically). Broken videos are logged to
``<out>.failures.csv`` and the run goes on; ``<out>.low_confidence.csv`` lists the frames
annotators should see first.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from hmtools.annotation.segmenters import Segmenter
from hmtools.annotation.trackers import (
    Box,
    Tracker,
    box_intersection,
    box_iou,
    clip_box,
    compensate_camera,
    make_tracker,
    mask_box,
)
from hmtools.errors import InputError
from hmtools.imageio import read_image
from hmtools.masks import (
    LAYER_PM,
    ORIGIN_PSEUDO,
    LayerData,
    MaskStore,
    StoreWriter,
    VideoId,
    format_video_id,
    merge_stores,
    video_key,
)
from hmtools.masks.frames import frame_pattern, scan_tree
from hmtools.progress import progress_bar

log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SAM_CPU_SECONDS = {"vit_b": 28.0, "vit_l": 60.0, "vit_h": 100.0}  # per 720p frame, measured/est.


@dataclass
class VideoJob:
    video_id: VideoId
    frames: list[tuple[int, Path]] = field(default_factory=list)  # (number, file)
    video_path: Path | None = None
    action_type: str = ""
    frames_dir: str | None = None

    @property
    def key(self) -> str:
        return video_key(self.video_id)

    def read(self, max_bytes: float | None = None) -> tuple[list[int], list[np.ndarray]]:
        """Frame numbers and BGR frames; raises :class:`InputError` on a broken source, or when
        the video would need more than ``max_bytes`` of memory (its frames and their masks: a
        whole broadcast instead of a clip) -- found before reading all of it, so a long job
        logs that video and goes on instead of being killed for memory on it at every resume."""
        if self.video_path is not None:
            cap = cv2.VideoCapture(str(self.video_path))
            if not cap.isOpened():
                raise InputError(f"{self.video_path}: OpenCV cannot open the video")
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            try:
                if n > 0 and w > 0 and h > 0:  # containers that say how long they are
                    _check_memory(self.video_path, n, w, h, max_bytes)
                frames = []
                while True:
                    ok, f = cap.read()
                    if not ok:
                        break
                    frames.append(f)
                    if len(frames) % 256 == 0:  # the container's count may be wrong or absent
                        fh, fw = f.shape[:2]
                        _check_memory(self.video_path, len(frames), fw, fh, max_bytes, True)
            finally:
                cap.release()
            if not frames:
                raise InputError(f"{self.video_path}: no decodable frame")
            return list(range(len(frames))), frames
        if not self.frames:
            raise InputError(f"video {format_video_id(self.video_id)}: no frames")
        out = []
        for n, p in self.frames:
            try:  # a damaged JPEG (libjpeg's "Corrupt JPEG data") fails the video
                img = read_image(p, cv2.IMREAD_COLOR)
            except InputError as e:
                raise InputError(f"frame {n}: {e}") from None
            if out and img.shape != out[0].shape:
                raise InputError(
                    f"{p}: frame {n} is {img.shape[1]}x{img.shape[0]}, the video's "
                    f"first frame {out[0].shape[1]}x{out[0].shape[0]}"
                )
            if not out:
                folder = p.parent
                _check_memory(folder, len(self.frames), img.shape[1], img.shape[0], max_bytes)
            out.append(img)
        return [n for n, _ in self.frames], out


def default_max_video_bytes() -> float:
    """Half of this machine's physical memory (unbounded where the OS does not say)."""
    try:
        return 0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _check_memory(
    source: Path, frames: int, w: int, h: int, max_bytes: float | None, at_least: bool = False
) -> None:
    """Frames (BGR) and masks of a video are held in memory while it is segmented."""
    need = frames * w * h * 4
    if max_bytes is not None and need > max_bytes:
        raise InputError(
            f"{source}: {'at least ' if at_least else ''}{frames} frames of {w}x{h} need "
            f"~{_gib(need)} in memory (frames and masks), over the {_gib(max_bytes)} allowed "
            "(--max-video-gb): cut it into clips"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def list_videos(
    root: str | os.PathLike,
    dataset: str = "folder",
    annotations: str | os.PathLike | None = None,
    length: int = 103,
    margin: int = 3,
) -> list[VideoJob]:
    """The videos of ``root``: a dataset in its official layout (``finediving``, ``mtl-aqa``,
    ``aqa7``: needs ``annotations``; MTL-AQA and AQA-7 give each sample's window plus the
    temporal-shift margin), a folder of frame folders (``folder``; symlinks followed) or a
    folder of video files."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if dataset in ("finediving", "mtl-aqa", "aqa7"):
        from hmtools.datasets.records import load_dataset

        if annotations is None:
            raise InputError(f"--dataset {dataset} needs --annotations")
        jobs = []
        for s in load_dataset(dataset, annotations, root):
            try:
                files = s.frame_files(length, margin=margin)
            except InputError as e:
                jobs.append(
                    VideoJob(s.id, [], action_type=s.action_type, frames_dir=f"missing: {e}")
                )
                continue
            jobs.append(
                VideoJob(
                    s.id,
                    files,
                    action_type=s.action_type,
                    frames_dir=os.path.relpath(s.frames_dir, root),
                )
            )
        return jobs
    if dataset != "folder":
        raise InputError(f"unknown --dataset {dataset!r}")
    videos = sorted(
        p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
    jobs = [VideoJob((p.stem,), video_path=p) for p in videos]
    has_folders = any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    if has_folders or not videos:  # frame folders beside video files are videos too
        try:
            folders = scan_tree(root, "folder")
        except InputError:
            if not videos:
                raise
            folders = []  # sub-folders without images
        jobs += [
            VideoJob(
                ff.video_id,
                list(zip(ff.frames, ff.files, strict=True)),
                frames_dir=os.path.relpath(ff.folder, root),
            )
            for ff in folders
        ]
    seen: dict[VideoId, VideoJob] = {}
    for j in jobs:
        if j.video_id in seen:
            other = seen[j.video_id]
            raise InputError(
                f"{root}: video {format_video_id(j.video_id)} is both "
                f"{other.video_path or other.frames_dir} and {j.video_path or j.frames_dir}"
            )
        seen[j.video_id] = j
    return jobs


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``k/n`` (0-based k), or from ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` or
    ``RANK``/``WORLD_SIZE`` when set; ``(0, 1)`` otherwise."""
    if spec:
        try:
            k, n = (int(x) for x in spec.split("/"))
        except ValueError:
            raise InputError(f"--shard {spec!r}: expected k/n, e.g. 0/8") from None
    elif "SLURM_ARRAY_TASK_ID" in os.environ and "SLURM_ARRAY_TASK_COUNT" in os.environ:
        k = int(os.environ["SLURM_ARRAY_TASK_ID"]) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", 0))
        n = int(os.environ["SLURM_ARRAY_TASK_COUNT"])
    elif "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        k, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    else:
        return 0, 1
    if not (n >= 1 and 0 <= k < n):
        raise InputError(f"shard {k}/{n}: need 0 <= k < n")
    return k, n


class Prompt(NamedTuple):
    """A box ``[x, y, w, h]`` (pixels) around the athlete on one frame of a video: ``frame`` is
    the frame's number as the frames folder names it (``None``: the first frame)."""

    box: Box
    frame: int | None = None


def load_prompts(path: str | os.PathLike) -> dict[str, Prompt]:
    """Boxes per video: JSON ``{"<video>": [x, y, w, h], ...}`` (or ``{"<video>": {"box": [x, y,
    w, h], "frame": N}}``), a JSON list of ``{"video": ..., "box": [x, y, w, h], "frame": N}``,
    or CSV with columns ``video,x,y,w,h`` and an optional ``frame``. ``frame`` is the frame
    number of the box (default: the video's first frame); the masks then run from that frame
    forward and backward. ``<video>`` is the id as ``name/clip`` (FineDiving), ``1/3`` (MTL-AQA),
    ``name`` (folder) or JSON text."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    out: dict[str, Prompt] = {}

    def frame_of(v: object, vid: str) -> int | None:
        if v is None or v == "":
            return None
        f = float(v)  # type: ignore[arg-type]
        if not (f.is_integer() and f >= 0):
            raise ValueError(f"frame of {vid} must be a frame number >= 0, not {v!r}")
        return int(f)

    try:
        if path.suffix.lower() == ".csv":
            for row in csv.DictReader(text.splitlines()):
                box = tuple(float(row[k]) for k in "xywh")
                out[row["video"]] = Prompt(box, frame_of(row.get("frame"), row["video"]))  # type: ignore[arg-type]
        else:
            data = json.loads(text)
            if isinstance(data, dict):
                items = [
                    (vid, v["box"], v.get("frame")) if isinstance(v, dict) else (vid, v, None)
                    for vid, v in data.items()
                ]
            else:
                items = [(d["video"], d["box"], d.get("frame")) for d in data]
            for vid, box, frame in items:
                if len(box) != 4:
                    raise ValueError(f"box of {vid} must be [x, y, w, h]")
                box_t = tuple(float(v) for v in box)
                out[str(vid)] = Prompt(box_t, frame_of(frame, str(vid)))  # type: ignore[arg-type]
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: bad prompts file ({e})") from None
    for vid, ((x, y, w, h), _) in out.items():
        if not all(np.isfinite(v) for v in (x, y, w, h)):
            raise InputError(f"{path}: video {vid}: box {[x, y, w, h]} has a non-finite value")
        if w <= 0 or h <= 0:
            raise InputError(
                f"{path}: video {vid}: box {[x, y, w, h]} has zero or negative size "
                "(boxes are [x, y, width, height] in pixels)"
            )
    return out


def prompt_keys(vid: VideoId) -> tuple[str, ...]:
    """The spellings of a video id a prompts file may use."""
    return (
        format_video_id(vid),
        json.dumps(list(vid)),
        json.dumps(list(vid), separators=(",", ":")),
        str(vid[0]),
    )


def check_prompt_box(box: Box, width: int, height: int, video: str) -> Box:
    """The prompts file's box for ``video`` clipped to the frame; :class:`InputError` when none
    of it lies in the ``width`` x ``height`` image."""
    x, y, w, h = box
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(
            f"video {video}: prompt box {[x, y, w, h]} lies outside the {width}x{height} frame"
        )
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        log.warning("video %s: prompt box %s clipped to the %dx%d frame", video, box, width, height)
    return (x0, y0, x1 - x0, y1 - y0)


def _prompt_for(prompts: dict[str, Prompt], vid: VideoId) -> Prompt | None:
    for k in prompt_keys(vid):
        if k in prompts:
            return prompts[k]
    return None


def find_athlete(
    frames: list[np.ndarray],
    look: int = 12,
    segmenter: Segmenter | None = None,
    states: dict[int, object] | None = None,
) -> Box:
    """Automatic first-frame box: what moves against the camera-compensated background in the
    first ``look`` frames (two similar blobs -- synchronised divers -- are joined into one box);
    the whole central region when nothing moves.

    Motion alone often boxes only the moving part of a diver who stands on the board (the arms)
    or a stretch of scenery the camera compensation missed. With a ``segmenter`` (one without a
    whole-video model: ``begin_video``), candidate boxes around the motion are segmented in the
    first frame and the best-scoring mask that agrees with the motion gives the box
    (:func:`_checked_box`). Synchronised divers: when two similar blobs move, each is also
    looked for around its own motion, and when one blob's person fills under half of it, a
    second person is looked for in the wider remaining side of it; two people found (within 4x
    of each other's size) give a box that holds both. ``states``: a dict that receives the
    segmenter's encoding of frame 0 (key 0) for :func:`segment_video`, which then does not
    encode that frame again (a SAM image-encoder pass per video)."""
    h, w = frames[0].shape[:2]
    blobs = _motion_blobs(frames, look)
    if not blobs:
        return (w * 0.3, h * 0.2, w * 0.4, h * 0.6)
    parts = [b for b, a in blobs[:2] if a >= 0.6 * blobs[0][1]]  # one athlete, or two in sync
    joined = _join(parts)
    if segmenter is None or not hasattr(segmenter, "encode"):  # none, or a video engine
        return joined
    if hasattr(segmenter, "begin_video"):
        return joined
    state = segmenter.encode([frames[0]])[0]
    if states is not None:
        states[0] = state
    one, score = _checked_box(segmenter, state, [b for b, _ in blobs[:3]], joined, w, h)
    if len(parts) == 2:  # synchronised divers, or one athlete and other motion
        (a, sa), (b, sb) = (_checked_box(segmenter, state, [p], p, w, h) for p in parts)
        if min(sa, sb) > 0 and _similar_size(a, b):  # two people
            return _join([a, b])
    elif score > 0 and _area(one) < 0.5 * _area(joined):
        # one blob of motion, one person found in a part of it: two divers side by side?
        x0, x1 = joined[0], joined[0] + joined[2]
        left, right = one[0] - x0, x1 - (one[0] + one[2])
        rest = (x0 if left > right else x1 - right, joined[1], max(left, right), joined[3])
        if rest[2] >= 0.5 * one[2]:
            b, sb = _checked_box(segmenter, state, [rest], rest, w, h)
            if sb > 0 and _similar_size(b, one) and box_iou(b, one) < 0.3:
                return _join([one, b])
    return one


def _checked_box(
    segmenter: Segmenter, state: object, blobs: list[Box], motion: Box, w: int, h: int
) -> tuple[Box, float]:
    """(box, score): the tight box of the best-scoring mask the segmenter gives for a box around
    the ``blobs`` -- each blob and person-shaped boxes of two heights centred on it -- among the
    masks whose box holds at least half of the ``motion`` box or lies at least half inside it
    (a mask away from the motion is a bystander: a crowd behind the board is full of
    person-like shapes); ``(motion, -1)`` when there is none."""
    cands = []
    for x, y, bw, bh in blobs:
        cands.append((x, y, bw, bh))
        cx, cy = x + bw / 2, y + bh / 2
        for fh in (0.3 * h, 0.5 * h):  # a standing athlete: twice as high as wide
            cands.append((cx - fh / 4, cy - fh / 2, fh / 2, fh))
    best, best_score = motion, -1.0
    for c in cands:
        try:
            m, score = segmenter.segment(state, clip_box(c, w, h), None)
        except (cv2.error, ValueError, RuntimeError):
            continue
        mb = mask_box(np.asarray(m))
        if (
            mb is not None
            and score > best_score
            and max(_inside(mb, motion), _inside(motion, mb)) >= 0.5
        ):
            best, best_score = mb, score
    return best, best_score


def _area(b: Box) -> float:
    return b[2] * b[3]


def _similar_size(a: Box, b: Box) -> bool:
    """Whether two boxes' areas are within 4x of each other (two people, not a person and a
    part or a crowd)."""
    return 0.25 <= _area(a) / max(_area(b), 1e-9) <= 4


def _inside(a: Box, b: Box) -> float:
    """The share of box ``a``'s area that lies inside box ``b``."""
    return box_intersection(a, b) / max(_area(a), 1e-9)


def _join(boxes: list[Box]) -> Box:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def _motion_blobs(frames: list[np.ndarray], look: int) -> list[tuple[Box, int]]:
    """(box, pixel count) of the parts that move against the camera-compensated background in
    the first ``look`` frames, largest first."""
    h, w = frames[0].shape[:2]
    acc = np.zeros((h, w), np.float32)
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames[: look + 1]]
    for g0, g1 in zip(grays[:-1], grays[1:], strict=False):
        warped = compensate_camera(g0, g1)
        acc += cv2.GaussianBlur(cv2.absdiff(g1, warped), (7, 7), 0).astype(np.float32)
    if acc.max() <= 0:
        return []
    a8 = np.clip(acc / acc.max() * 255, 0, 255).astype(np.uint8)
    _, m = cv2.threshold(a8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    order = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    return [
        (tuple(float(v) for v in stats[k, :4]), int(stats[k, cv2.CC_STAT_AREA]))  # type: ignore[misc]
        for k in order
    ]


def segment_video(
    frames: list[np.ndarray],
    segmenter: Segmenter,
    tracker: Tracker,
    box: Box,
    chunk: int | None = None,
    ahead: int = 2,
    states: dict[int, object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``uint8 [T, H, W]`` and scores ``[T]`` for one video (see module doc). A frame the
    segmenter fails on gets an empty mask with score 0.

    Frames are encoded ``chunk`` at a time (default: the segmenter's ``batch_size``, else 32).
    A segmenter with a heavy batched encoder (``overlap_encode``: SAM on a GPU) encodes up to
    ``ahead`` chunks in a worker thread while the tracker and the prompt decoder work through the
    current one, so the encoder is not held up by the tracker (torch and OpenCV release the GIL).
    When the encoder is the slow side (a real SAM) the tracking then costs no wall time but for the
    last chunk's, which is why a chunk is one encoder batch, not more. Same masks either way.
    ``states``: encodings already made, by frame index (:func:`find_athlete` encodes frame 0),
    used instead of encoding those frames again."""
    h, w = frames[0].shape[:2]
    masks = np.zeros((len(frames), h, w), np.uint8)
    scores = np.zeros(len(frames), np.float32)
    tracker.init(frames[0], clip_box(box, w, h))
    track: dict = {"box": clip_box(box, w, h), "prev": None}
    if hasattr(segmenter, "begin_video"):  # segmenters that model the whole video first
        segmenter.begin_video(frames)
    size = max(1, int(chunk or getattr(segmenter, "batch_size", 32)))
    starts = list(range(0, len(frames), size))

    known = states or {}

    def encode(c0: int) -> list[object]:
        ts = range(c0, min(c0 + size, len(frames)))
        todo = [t for t in ts if t not in known]
        new = iter(segmenter.encode([frames[t] for t in todo]) if todo else ())
        return [known[t] if t in known else next(new) for t in ts]

    overlap = getattr(segmenter, "overlap_encode", False) and len(starts) > 1
    if not overlap:
        for c0 in starts:
            _segment_chunk(segmenter, tracker, frames, encode(c0), c0, masks, scores, track)
        return masks, scores
    pool = ThreadPoolExecutor(1, thread_name_prefix="hm-encode")
    try:
        pending = deque(pool.submit(encode, c0) for c0 in starts[: max(1, ahead)])
        for n, c0 in enumerate(starts):
            states = pending.popleft().result()
            if n + len(pending) + 1 < len(starts):  # keep the encoder `ahead` chunks in front
                pending.append(pool.submit(encode, starts[n + len(pending) + 1]))
            _segment_chunk(segmenter, tracker, frames, states, c0, masks, scores, track)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return masks, scores


def segment_from(
    frames: list[np.ndarray],
    segmenter: Segmenter,
    tracker: str,
    box: Box,
    start: int = 0,
    states: dict[int, object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks and scores for every frame from a ``box`` on frame position ``start``: forward to
    the end and, when ``start`` is not the first frame, backward to the first (a fresh
    ``tracker`` each way). A video engine (``segment_clip``: SAM 2) propagates the box itself."""
    if hasattr(segmenter, "segment_clip"):
        return segmenter.segment_clip(frames, box, start)
    fwd = segment_video(
        frames[start:], segmenter, make_tracker(tracker), box,
        states={t - start: v for t, v in (states or {}).items() if t >= start},
    )  # fmt: skip
    if start == 0:
        return fwd
    back_states = {start - t: v for t, v in (states or {}).items() if t <= start}
    bwd = segment_video(
        frames[start::-1], segmenter, make_tracker(tracker), box, states=back_states
    )
    return (
        np.concatenate([bwd[0][::-1][:start], fwd[0]]),
        np.concatenate([bwd[1][::-1][:start], fwd[1]]),
    )


def _segment_chunk(
    segmenter: Segmenter,
    tracker: Tracker,
    frames: list[np.ndarray],
    states: list[object],
    c0: int,
    masks: np.ndarray,
    scores: np.ndarray,
    track: dict,
) -> None:
    """Track and segment the frames of one encoded chunk starting at frame ``c0``; ``track``
    carries the current box and the previous mask from chunk to chunk."""
    h, w = masks.shape[1:]
    cur_box, prev = track["box"], track["prev"]
    for j, state in enumerate(states):
        t = c0 + j
        if t > 0:
            cur_box, _ = tracker.update(frames[t])
        try:
            m, s = segmenter.segment(state, cur_box, prev)
        except (cv2.error, ValueError, RuntimeError) as e:
            log.warning("frame %d: segmenter failed (%s): empty mask", t, e)
            m, s = np.zeros((h, w), np.uint8), 0.0
        m = m.astype(np.uint8, copy=False)
        mb = mask_box(m)  # None: an empty mask
        if mb is None:
            s = 0.0
        masks[t], scores[t] = m, s
        if mb is not None and plausible_correction(mb, cur_box):
            tracker.correct(masks[t], mb)
            cur_box = mb
        else:
            tracker.correct(None)
        prev = (state, m)
    track["box"], track["prev"] = cur_box, prev


def plausible_correction(found: Box, tracked: Box) -> bool:
    """Whether a mask's box ``found`` may correct the ``tracked`` box: of a similar size (area
    within 4x either way), or lying mostly (3/4 of it) inside the tracked box and not a speck
    (>= 1/20 of its area). The tracked box only loosely bounds the athlete -- it grows after a
    mask that leaked onto the board and keeps its size through frames with empty masks -- and a
    tight mask inside it is how it shrinks back; without that, a box three times too large
    refused every right mask and the segmenter, given ever less of the athlete at its
    resolution, missed or leaked more (real FineDiving frames, hand-boxed: box IoU 0.54 -> 0.70;
    the same mean IoU on the synthetic and DAVIS sets). A mask outside the tracked box and of a
    very different size is taken to be something else (a leak, a bystander)."""
    ratio = _area(found) / max(1.0, _area(tracked))
    return 0.25 <= ratio <= 4 or (ratio >= 0.05 and _inside(found, tracked) >= 0.75)


@dataclass
class PseudoMaskReport:
    out: Path
    videos_done: int = 0
    videos_skipped: int = 0
    frames: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    segment_seconds: float = 0.0


def shard_path(out: Path, k: int, n: int) -> Path:
    return out if n == 1 else out.with_name(f"{out.stem}.shard{k}of{n}{out.suffix}")


def run_pseudo_mask(
    data_root: str | os.PathLike,
    out: str | os.PathLike,
    segmenter: Segmenter,
    *,
    dataset: str = "folder",
    annotations: str | os.PathLike | None = None,
    tracker: str = "flow",
    prompts: str | os.PathLike | None = None,
    shard: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    low_score: float = 0.7,
    name: str | None = None,
    progress: bool = True,
    max_video_bytes: float | None = None,
) -> PseudoMaskReport:
    """Pseudo masks for every video of ``data_root`` into the ``pm`` layer of ``out`` (see
    module doc). Returns a report; ``report.failures`` lists videos that could not be done
    (including any that would need more than ``max_video_bytes`` of memory: default half of
    this machine's)."""
    if max_video_bytes is None:
        max_video_bytes = default_max_video_bytes()
    k, n = parse_shard(shard)
    out = shard_path(Path(out), k, n)
    parts = out.with_name(out.name + ".parts")
    if out.exists() and not (resume or overwrite):
        raise InputError(f"{out} exists: --resume to finish it, --overwrite to redo it")
    if overwrite and parts.exists() and not resume:
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    jobs = sorted(list_videos(data_root, dataset, annotations), key=lambda j: j.key)
    mine = [j for i, j in enumerate(jobs) if i % n == k]
    box_of = load_prompts(prompts) if prompts else {}
    if box_of:
        known = {k for j in jobs for k in prompt_keys(j.video_id)}
        unknown = sorted(k for k in box_of if k not in known)
        if unknown:
            log.warning(
                "%s: %d prompt(s) match no video of %s and are ignored: %s",
                prompts,
                len(unknown),
                data_root,
                ", ".join(repr(k) for k in unknown[:10]) + (" ..." if len(unknown) > 10 else ""),
            )
    rep = PseudoMaskReport(out)
    t_start = time.perf_counter()
    fail_path = out.with_name(out.stem + ".failures.csv")
    bar = progress_bar(
        mine,
        desc=f"pseudo-mask {k}/{n}" if n > 1 else "pseudo-mask",
        unit="video",
        disable=not progress,
    )
    for job in bar:
        part = parts / f"{job.key}.h5"
        if part.exists() and resume:
            rep.videos_skipped += 1
            continue
        try:
            if job.frames_dir and job.frames_dir.startswith("missing: "):
                raise InputError(job.frames_dir[len("missing: ") :])
            numbers, frames = job.read(max_video_bytes)
            known: dict[int, object] = {}  # frame 0's encoding, when the finder made one
            prompt = _prompt_for(box_of, job.video_id)
            start = 0
            if prompt is not None:
                h0, w0 = frames[0].shape[:2]
                vname = format_video_id(job.video_id)
                box = check_prompt_box(prompt.box, w0, h0, vname)
                if prompt.frame is not None:
                    if prompt.frame not in numbers:
                        raise InputError(
                            f"video {vname}: the prompt's frame {prompt.frame} is not among its "
                            f"frames ({numbers[0]}..{numbers[-1]})"
                        )
                    start = numbers.index(prompt.frame)
            else:
                box = find_athlete(frames, segmenter=segmenter, states=known)
            t0 = time.perf_counter()
            masks, scores = segment_from(frames, segmenter, tracker, box, start, states=known)
            rep.segment_seconds += time.perf_counter() - t0
        except InputError as e:
            rep.failures.append((format_video_id(job.video_id), str(e)))
            log.error("video %s failed: %s", format_video_id(job.video_id), e)
            continue
        h, w = frames[0].shape[:2]
        pattern = frame_pattern([p.name for _, p in job.frames]) if job.frames else None
        with StoreWriter(part, name=name or out.stem, overwrite=True) as wr:
            wr.add_video(
                job.video_id,
                height=h,
                width=w,
                num_frames=len(frames),
                action_type=job.action_type,
                frames_dir=job.frames_dir,
                video_path=str(job.video_path) if job.video_path else None,
                frame_pattern=pattern,
            )
            wr.write_layer(
                job.video_id, LAYER_PM, LayerData.from_masks(numbers, masks, scores, ORIGIN_PSEUDO)
            )
        rep.videos_done += 1
        rep.frames += len(frames)
        el = time.perf_counter() - t_start
        bar.set_postfix(fps=f"{rep.frames / max(el, 1e-9):.1f}")
    rep.seconds = time.perf_counter() - t_start
    if rep.failures:
        with open(fail_path, "w", newline="") as fh:
            wcsv = csv.writer(fh)
            wcsv.writerow(["video", "reason"])
            wcsv.writerows(rep.failures)
    part_files = sorted(parts.glob("*.h5"))
    if not part_files:
        raise InputError(f"{data_root}: no video could be processed (see {fail_path})")
    merge_stores(part_files, out, name=name or out.stem, overwrite=True, progress=False)
    write_low_confidence(out, out.with_name(out.stem + ".low_confidence.csv"), low_score)
    return rep


def write_low_confidence(store_path: Path, path: Path, threshold: float) -> int:
    """Frames whose pm score is below ``threshold`` (NaN counts as lowest), lowest first."""
    rows = []
    with MaskStore(store_path) as st:
        for info, d in st.iter_layer(LAYER_PM):
            for f, s in zip(d.frame_index.tolist(), d.score.tolist(), strict=True):
                if not (s >= threshold):
                    rows.append((info.name, f, s))
    rows.sort(key=lambda r: -1.0 if np.isnan(r[2]) else r[2])
    with open(path, "w", newline="") as fh:
        wcsv = csv.writer(fh)
        wcsv.writerow(["video", "frame", "score"])
        wcsv.writerows(rows)
    return len(rows)
