"""Pictures of masks on their frames (the paper's Figs. 3, 5 and 6): ``pm`` and ``gtm`` contours
drawn on the frame, montages of each video's worst-agreeing frames, and an animated GIF or MP4 of
a video. ``hmtools overlay`` is a thin shell over :func:`overlay_videos`; ``hmtools stats``
puts :func:`example_montage` in its report."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hmtools.errors import InputError
from hmtools.fsutil import staged_dir
from hmtools.imageio import read_image
from hmtools.masks import rle as rle_ops
from hmtools.masks.frames import FrameLocator
from hmtools.masks.io import video_dir_parts
from hmtools.masks.schema import LAYER_GTM, LAYER_PM, format_video_id, parse_video_id_arg
from hmtools.masks.store import MaskStore, VideoInfo
from hmtools.progress import progress_bar

log = logging.getLogger(__name__)

#: BGR colours of each layer's contour (green truth, red pseudo mask, blue for any other).
COLOURS = {LAYER_GTM: (60, 200, 60), LAYER_PM: (40, 40, 230)}
_OTHER = (230, 140, 40)


def draw(frame: np.ndarray, masks: dict[str, np.ndarray | None]) -> tuple[np.ndarray, str]:
    """``frame`` (BGR) with the contour of each layer's mask; also a note naming the layers whose
    mask is empty or missing there ("pm: empty")."""
    out = frame.copy()
    thick = max(1, round(min(out.shape[:2]) / 180))
    notes = []
    for layer, m in masks.items():
        colour = COLOURS.get(layer, _OTHER)
        if m is None:
            notes.append(f"{layer}: none")
            continue
        if not m.any():
            notes.append(f"{layer}: empty")
            continue
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, thick, cv2.LINE_AA)
    return out, ", ".join(notes)


def _caption_lines(text: str, width: int, scale: float) -> list[str]:
    """``text`` cut into lines that fit ``width`` pixels (at most 2; long names lose their
    start, which is the part videos of one competition share)."""
    per = max(
        8, int(width / (cv2.getTextSize("M", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] * 0.8))
    )
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(w) > per:
            w = "..." + w[-(per - 3) :]
        if cur and len(cur) + 1 + len(w) > per:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    return lines[:2] if len(lines) <= 2 else [lines[0], lines[1][: per - 3] + "..."]


def montage(
    tiles: list[tuple[np.ndarray, str]], cols: int = 3, tile_width: int = 320
) -> np.ndarray:
    """``(image BGR, caption)`` tiles resized to one width, ``cols`` to a row, each caption in a
    strip under its tile, and a legend of the layer colours."""
    if not tiles:
        raise ValueError("montage needs at least one tile")
    scale = 0.42
    line_h = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1] + 6
    rs = []
    for img, cap in tiles:
        f = tile_width / img.shape[1]
        im = cv2.resize(
            img, (tile_width, max(1, round(img.shape[0] * f))), interpolation=cv2.INTER_AREA
        )
        rs.append((im, _caption_lines(cap, tile_width, scale)))
    th = max(im.shape[0] for im, _ in rs) + 2 * line_h
    cols = max(1, min(cols, len(rs)))
    rows = -(-len(rs) // cols)
    sheet = np.full((rows * (th + 4) + 22, cols * (tile_width + 4), 3), 255, np.uint8)
    for k, (im, lines) in enumerate(rs):
        r, c = divmod(k, cols)
        y, x = r * (th + 4), c * (tile_width + 4)
        sheet[y : y + im.shape[0], x : x + tile_width] = im
        for j, ln in enumerate(lines):
            yy = y + im.shape[0] + (j + 1) * line_h - 3
            cv2.putText(
                sheet, ln, (x + 2, yy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
            )
    y = sheet.shape[0] - 8
    x = 4
    for layer, colour in COLOURS.items():
        cv2.line(sheet, (x, y - 4), (x + 18, y - 4), colour, 2)
        cv2.putText(sheet, layer, (x + 22, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        x += 80
    return sheet


def _labelled(img: np.ndarray, text: str) -> np.ndarray:
    """A frame of an animation with ``text`` in its corner."""
    h, w = img.shape[:2]
    scale = max(0.35, min(h, w) / 600)
    (tw, tht), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (min(w, tw + 6), tht + base + 6), (0, 0, 0), -1)
    cv2.putText(img, text, (3, tht + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return img


def _masks_at(store: MaskStore, info: VideoInfo, layers: list[str], frames: list[int]) -> dict:
    """``{layer: {frame: mask or None}}`` for the frames asked (None: no mask in that layer)."""
    out = {}
    for layer in layers:
        got: dict[int, np.ndarray | None] = dict.fromkeys(frames)
        if layer in info.layers:
            d = store.read_layer(info.video_id, layer)
            pos = {int(f): i for i, f in enumerate(d.frame_index)}
            have = [f for f in frames if f in pos]
            dec = rle_ops.decode([d.rles[pos[f]] for f in have], info.height, info.width)
            got.update(dict(zip(have, dec, strict=True)))
        out[layer] = got
    return out


def _frame(locator: FrameLocator, info: VideoInfo, frame: int) -> np.ndarray:
    img = read_image(locator.frame(info.video_id, frame, info.attrs.get("frames_dir")))
    if img.shape[:2] != (info.height, info.width):
        img = cv2.resize(img, (info.width, info.height), interpolation=cv2.INTER_AREA)
    return img


def worst_frames(store: MaskStore, info: VideoInfo, k: int) -> list[tuple[int, str]]:
    """``(frame, label)`` of the ``k`` frames where ``pm`` agrees worst with ``gtm``: false alarms
    and athlete frames by rising IoU. Without both layers: ``k`` evenly spaced frames."""
    if LAYER_PM in info.layers and LAYER_GTM in info.layers:
        a = store.read_layer(info.video_id, LAYER_PM)
        b = store.read_layer(info.video_id, LAYER_GTM)
        frames, ia, ib = np.intersect1d(a.frame_index, b.frame_index, return_indices=True)
        iou = rle_ops.iou([a.rles[i] for i in ia], [b.rles[i] for i in ib], info.height, info.width)
        bad = (b.area[ib] > 0) | (a.area[ia] > 0)  # both empty: nothing to look at
        order = [j for j in np.argsort(iou, kind="stable") if bad[j]][:k]
        return [
            (int(frames[j]), f"frame {int(frames[j])} IoU {iou[j]:.2f}")
            for j in sorted(order, key=lambda j: frames[j])
        ]
    layer = info.layers[0]
    fi = store.read_layer(info.video_id, layer).frame_index
    pick = np.unique(np.linspace(0, len(fi) - 1, min(k, len(fi))).round().astype(int))
    return [(int(fi[j]), f"frame {int(fi[j])}") for j in pick]


@dataclass
class OverlayReport:
    out: Path
    montages: list[Path] = field(default_factory=list)
    animations: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _write_animation(path: Path, frames: list[np.ndarray], fps: float) -> None:
    if path.suffix == ".gif":
        from PIL import Image

        imgs = [Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
        imgs[0].save(
            path, save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0
        )
        return
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w - w % 2, h - h % 2))
    if not wr.isOpened():
        raise InputError(f"{path}: OpenCV cannot write MP4 here (try --format gif)")
    for f in frames:
        wr.write(f[: h - h % 2, : w - w % 2])
    wr.release()


def overlay_videos(
    store_path: str | os.PathLike,
    frames_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    videos: list[str] | None = None,
    worst: int = 6,
    animate: bool = False,
    fmt: str = "gif",
    fps: float = 10.0,
    max_width: int = 640,
    overwrite: bool = False,
    progress: bool = True,
) -> OverlayReport:
    """For each video (all, or ``videos`` given as the reports print them, ``name/clip``):
    ``OUT/<video>/worst.png``, a montage of its ``worst`` worst-agreeing frames with the ``pm``
    (red) and ``gtm`` (green) contours; with ``animate`` also ``OUT/<video>/overlay.gif`` (or
    ``.mp4``) of every frame. A video whose frames cannot be found is reported and skipped;
    nothing is written unless at least one video could be drawn."""
    if fmt not in ("gif", "mp4"):
        raise InputError(f"--format must be gif or mp4, not {fmt!r}")
    locator = FrameLocator(frames_root)
    final = Path(out)
    rep = OverlayReport(final)
    with MaskStore(store_path) as store, staged_dir(final, overwrite=overwrite) as stage:
        infos = list(store.videos())
        if videos:
            want = {parse_video_id_arg(v) for v in videos}
            infos = [i for i in infos if i.video_id in want]
            missing = want - {i.video_id for i in infos}
            if missing:
                raise InputError(
                    f"{store.path}: no video {', '.join(sorted(map(format_video_id, missing)))}"
                )
        layers = [x for x in (LAYER_GTM, LAYER_PM) if any(x in i.layers for i in infos)]
        layers += sorted({x for i in infos for x in i.layers} - set(layers))
        for info in progress_bar(infos, desc="overlay", unit="video", disable=not progress):
            d = stage.joinpath(*video_dir_parts(info.video_id))
            try:
                picks = worst_frames(store, info, worst)
                ms = _masks_at(store, info, layers, [f for f, _ in picks])
                tiles = []
                for f, label in picks:
                    img, note = draw(_frame(locator, info, f), {x: ms[x][f] for x in layers})
                    tiles.append((img, f"{label} {note}".strip()))
                d.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / "worst.png"), montage(tiles))
                rep.montages.append(final.joinpath(*video_dir_parts(info.video_id), "worst.png"))
                if animate:
                    fi = sorted(
                        {
                            int(f)
                            for x in layers
                            if x in info.layers
                            for f in store.read_layer(info.video_id, x).frame_index
                        }
                    )
                    ms = _masks_at(store, info, layers, fi)
                    scale = min(1.0, max_width / info.width)
                    seq = []
                    for f in fi:
                        img, note = draw(_frame(locator, info, f), {x: ms[x][f] for x in layers})
                        img = _labelled(img, f"frame {f} {note}".strip())
                        if scale < 1:
                            img = cv2.resize(
                                img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                            )
                        seq.append(img)
                    _write_animation(d / f"overlay.{fmt}", seq, fps)
                    rep.animations.append(
                        final.joinpath(*video_dir_parts(info.video_id), f"overlay.{fmt}")
                    )
            except InputError as e:
                rep.failed.append((info.name, str(e)))
                log.error("video %s: %s", info.name, e)
        if not rep.montages:
            raise InputError(
                f"no video could be drawn: {rep.failed[0][1] if rep.failed else 'no videos'}"
            )
    return rep


def example_montage(
    store_path: str | os.PathLike,
    frames_root: str | os.PathLike,
    path: str | os.PathLike,
    per_video: pd.DataFrame | None = None,
    videos: int = 6,
) -> Path:
    """One sheet for the stats report: the worst-agreeing frame of the ``videos`` videos with
    the lowest agreement (``per_video`` from :func:`~hmtools.masks.agreement.per_group`), or of
    the first videos when there is no agreement table."""
    locator = FrameLocator(frames_root)
    tiles = []
    with MaskStore(store_path) as store:
        by_name = {i.name: i for i in store.videos()}
        names = (
            list(per_video["video"]) if per_video is not None and len(per_video) else list(by_name)
        )
        for name in names:
            if len(tiles) >= videos:
                break
            info = by_name[name]
            picks = worst_frames(store, info, 1)
            if not picks:
                continue
            f, label = picks[0]
            layers = [x for x in (LAYER_GTM, LAYER_PM) if x in info.layers] or info.layers
            ms = _masks_at(store, info, layers, [f])
            try:
                img = _frame(locator, info, f)
            except InputError as e:
                log.warning("stats montage: %s", e)
                continue
            img, note = draw(img, {x: ms[x][f] for x in layers})
            tiles.append((img, f"{name} {label} {note}".strip()))
    if not tiles:
        raise InputError(f"{frames_root}: none of the store's frames could be found")
    cv2.imwrite(str(path), montage(tiles))
    return Path(path)
