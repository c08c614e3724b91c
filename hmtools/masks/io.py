"""Import (``pack``) and export (``unpack``) of mask folder trees and COCO JSON.

Folder trees mirror the frames: ``ROOT/<video_name>/<clip_idx>/<frame:05d>.jpg`` (FineDiving-HM
release) or ``ROOT/<video>/<frame files>``; one grayscale (or RGB) image per frame, foreground
where the gray value is ``>= threshold`` (default 128: JPEG masks carry compression noise around
0 and 255, so the mid-point separates them). COCO JSON: ``images`` (id, file_name, height, width,
optional ``hm_video_id`` and ``frame_index``) and ``annotations`` (image_id, ``segmentation`` as
compressed/uncompressed RLE or polygons); all annotations of an image are united into one mask.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from hmtools.errors import InputError
from hmtools.fsutil import atomic_write_bytes, staged_dir
from hmtools.imageio import read_image
from hmtools.masks import rle as rle_ops
from hmtools.masks.frames import DEFAULT_FRAME_PATTERN, FrameFolder, frame_numbers, scan_tree
from hmtools.masks.schema import (
    LAYER_PM,
    ORIGIN_GROUND_TRUTH,
    ORIGIN_PSEUDO,
    ORIGINS,
    VideoId,
    format_video_id,
    normalize_video_id,
)
from hmtools.masks.store import LayerData, MaskStore, StoreWriter
from hmtools.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 128


@dataclass
class PackReport:
    """What a pack did: videos and masks written, and the videos skipped with their reason."""

    out: Path
    layer: str
    videos: int = 0
    masks: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)


def default_origin(layer: str) -> int:
    """``pm`` layers hold pseudo masks; anything imported as another layer is ground truth."""
    return ORIGIN_PSEUDO if layer.startswith(LAYER_PM) else ORIGIN_GROUND_TRUTH


def read_mask_image(path: Path, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """One mask file -> ``uint8 [H, W]`` 0/1. Colour images are read as gray; a damaged JPEG
    (libjpeg's "Corrupt JPEG data") is an error naming the file, not a wrong mask."""
    if not path.is_file():
        raise InputError(f"{path}: unreadable or empty mask file")
    img = read_image(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    return (img >= threshold).astype(np.uint8)


_PACK_CHUNK = 64  # frames read and encoded at a time: memory stays flat on long 1080p videos


def _read_folder(
    ff: FrameFolder, threshold: int, pool: ThreadPoolExecutor, layer: str
) -> tuple[LayerData, int, int, bool]:
    """One video's mask files -> ``(layer data, height, width, any foreground)``, read and
    encoded ``_PACK_CHUNK`` frames at a time; every file must have the first one's size."""
    parts, size, fg = [], None, False
    for i0 in range(0, len(ff.files), _PACK_CHUNK):
        files = ff.files[i0 : i0 + _PACK_CHUNK]
        masks = list(pool.map(lambda p: read_mask_image(p, threshold), files))
        if size is None:
            size = masks[0].shape
        for path, m in zip(files, masks, strict=True):
            if m.shape != size:
                raise InputError(
                    f"{path}: size {m.shape[1]}x{m.shape[0]} differs from the video's first mask "
                    f"{ff.files[0].name} ({size[1]}x{size[0]})"
                )
        stack = np.stack(masks)
        fg = fg or bool(stack.any())
        parts.append(
            LayerData.from_masks(
                ff.frames[i0 : i0 + _PACK_CHUNK], stack, None, default_origin(layer)
            )
        )
    data = LayerData.concat(parts)
    data.encoded_size = (int(size[0]), int(size[1]))  # every part was encoded at this size
    return data, int(size[0]), int(size[1]), fg


def _open_writer(out: Path, name: str | None, overwrite: bool, append: bool) -> StoreWriter:
    if append and overwrite:
        raise InputError("--append and --overwrite exclude each other")
    w = StoreWriter(out, name=name, mode="append" if append else "create", overwrite=overwrite)
    w.exists_hint = "pass --overwrite to replace it or --append to add to it"
    return w


def pack_folder(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layer: str = "gtm",
    name: str | None = None,
    layout: str = "auto",
    threshold: int = DEFAULT_THRESHOLD,
    overwrite: bool = False,
    append: bool = False,
    skip_bad: bool = False,
    action_types: dict[VideoId, str] | None = None,
    progress: bool = True,
) -> PackReport:
    """Pack a mask folder tree into the ``layer`` of an -HM store at ``out``.

    All-or-nothing unless ``skip_bad``: on any bad input no output is written (an existing
    ``out`` stays as it was). With ``skip_bad`` the good videos are packed and the bad ones
    listed in the report.
    """
    if not 0 < threshold <= 255:
        raise InputError(f"threshold {threshold} must be in 1..255")
    folders = scan_tree(root, layout)
    report = PackReport(Path(out), layer)
    with _open_writer(Path(out), name, overwrite, append) as w, ThreadPoolExecutor(4) as pool:
        for ff in progress_bar(folders, desc=f"pack {layer}", unit="video", disable=not progress):
            try:
                data, h, wd, fg = _read_folder(ff, threshold, pool, layer)
                if not fg:
                    log.warning("%s: every mask is empty (threshold %d)", ff.folder, threshold)
                w.add_video(
                    ff.video_id,
                    height=h,
                    width=wd,
                    num_frames=len(ff.files),
                    action_type=(action_types or {}).get(ff.video_id, ""),
                    frame_pattern=ff.pattern,
                )
                w.write_layer(ff.video_id, layer, data)
            except InputError as e:
                if not skip_bad:
                    raise
                report.bad.append((format_video_id(ff.video_id), str(e)))
                continue
            report.videos += 1
            report.masks += len(data)
        if report.videos == 0:
            raise InputError(f"{root}: no video could be packed")
    return report


# ----------------------------------------------------------------------------------------------
# COCO JSON


def _coco_image_video(img: dict, layout_parts: Callable[[str], VideoId]) -> tuple[VideoId, int]:
    if "hm_video_id" in img:
        vid = normalize_video_id(img["hm_video_id"])
    else:
        vid = layout_parts(img["file_name"])
    if "frame_index" in img:
        frame = int(img["frame_index"])
    else:
        frame = frame_numbers([Path(img["file_name"]).name])[0]
    return vid, frame


def _id_from_file_name(file_name: str) -> VideoId:
    parts = Path(file_name).parent.parts
    if not parts:
        raise InputError(f"image {file_name!r}: no folder in file_name and no hm_video_id")
    if len(parts) >= 2 and parts[-1].isdigit():
        return normalize_video_id((parts[-2], int(parts[-1])))
    return normalize_video_id((parts[-1],))


def load_coco(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path}: not a COCO file (no 'images' list)")
    if not isinstance(data.get("annotations", []), list):
        raise InputError(f"{path}: 'annotations' is not a list")
    return data


def pack_coco(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layer: str = "gtm",
    name: str | None = None,
    overwrite: bool = False,
    append: bool = False,
    skip_bad: bool = False,
    progress: bool = True,
) -> PackReport:
    """Pack a COCO JSON file (RLE or polygon segmentations) into ``layer`` of ``out``.

    Video id per image: ``hm_video_id`` if present, else the image's folder(s) in ``file_name``
    (``name/3/00012.jpg`` -> ``("name", 3)``); frame: ``frame_index`` or the file-name number.
    Every listed image gets a mask (empty when it has no annotation).
    """
    path = Path(path)
    data = load_coco(path)
    videos: dict[VideoId, dict] = {}
    by_image: dict[object, list[dict]] = defaultdict(list)
    images: dict[object, tuple[VideoId, int, int, int]] = {}
    image_meta: dict[object, dict] = {}  # hm_score / hm_origin of frames without annotation
    for img in data["images"]:
        try:
            iid = img["id"]
            h, w = int(img["height"]), int(img["width"])
            vid, frame = _coco_image_video(img, _id_from_file_name)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"{path}: image entry {img!r:.120} is missing or has bad {e}"
            ) from None
        if iid in images:
            raise InputError(f"{path}: image id {iid!r} appears twice")
        images[iid] = (vid, frame, h, w)
        image_meta[iid] = img
    for ann in data.get("annotations", []):
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            raise InputError(f"{path}: annotation {ann!r:.120} refers to no listed image")
        by_image[ann["image_id"]].append(ann)
    for v in data.get("videos", []) or []:
        if isinstance(v, dict) and "hm_video_id" in v:
            videos[normalize_video_id(v["hm_video_id"])] = v
    per_video: dict[VideoId, list] = defaultdict(list)
    for iid, (vid, frame, h, w) in images.items():
        per_video[vid].append((frame, h, w, iid))
    report = PackReport(Path(out), layer)
    with _open_writer(Path(out), name, overwrite, append) as wr:
        for vid in progress_bar(
            sorted(per_video, key=str), desc=f"pack {layer}", disable=not progress
        ):
            entries = sorted(per_video[vid])
            try:
                data_layer = _coco_video_layer(vid, entries, by_image, layer, image_meta)
                meta = videos.get(vid, {})
                wr.add_video(
                    vid,
                    height=entries[0][1],
                    width=entries[0][2],
                    num_frames=int(meta.get("num_frames", len(entries))),
                    action_type=str(meta.get("action_type", "")),
                    frame_pattern=meta.get("frame_pattern"),
                )
                wr.write_layer(vid, layer, data_layer)
            except InputError as e:
                if not skip_bad:
                    raise InputError(f"{path}: {e}") from None
                report.bad.append((format_video_id(vid), str(e)))
                continue
            report.videos += 1
            report.masks += len(data_layer)
        if report.videos == 0:
            raise InputError(f"{path}: no images to pack")
    return report


def _coco_video_layer(
    vid: VideoId, entries: list, by_image: dict, layer: str, image_meta: dict | None = None
) -> LayerData:
    h0, w0 = entries[0][1], entries[0][2]
    frames, rles, scores, origins = [], [], [], []
    for frame, h, w, iid in entries:
        where = f"video {format_video_id(vid)} frame {frame}"
        if (h, w) != (h0, w0):
            raise InputError(f"{where}: size {w}x{h} differs from the video's {w0}x{h0}")
        anns = by_image.get(iid, [])
        try:
            parts = [rle_ops.from_coco_segmentation(a.get("segmentation"), h, w) for a in anns]
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        frames.append(frame)
        rles.append(rle_ops.union(parts, h, w))
        img = (image_meta or {}).get(iid, {})
        src = anns or [{"score": img.get("hm_score"), "origin": img.get("hm_origin")}]
        sc = [a["score"] for a in src if isinstance(a.get("score"), (int, float))]
        scores.append(float(max(sc)) if sc else np.nan)
        og = [a["origin"] for a in src if a.get("origin") in ORIGINS]
        origins.append(int(og[0]) if og else default_origin(layer))
    if len(set(frames)) != len(frames):
        raise InputError(f"video {format_video_id(vid)}: a frame number appears twice")
    return LayerData.from_rles(frames, rles, h0, w0, scores, origins)


# ----------------------------------------------------------------------------------------------
# export


def _frame_name(pattern: str | None, frame: int, ext: str | None) -> str:
    """The file name of ``frame`` under the store's ``frame_pattern`` (``ext`` replaces its
    extension); an error unless it is one plain file name (no folder part, no ``..``)."""
    pat = pattern or DEFAULT_FRAME_PATTERN + ".png"
    if "." not in pat.rsplit("}", 1)[-1]:
        pat += ".png"
    try:
        name = pat.format(int(frame))
    except (ValueError, IndexError, KeyError, AttributeError) as e:
        raise InputError(f"frame_pattern {pat!r} cannot name frame {frame}: {e}") from None
    if ext is not None:
        name = str(Path(name).with_suffix(ext))
    if not safe_part(name) or name.startswith("."):
        raise InputError(f"frame_pattern {pat!r} gives {name!r} for frame {frame}: not a file name")
    return name


def safe_part(name: str) -> bool:
    """``name`` is one path component that stays inside its parent folder."""
    return (
        bool(name)
        and name not in (".", "..")
        and not any(c in name for c in ("/", "\\", "\0"))
        and not Path(name).is_absolute()
        and not (len(name) > 1 and name[1] == ":")  # a Windows drive ("C:x")
    )


def video_dir_parts(video_id: VideoId) -> list[str]:
    """Folder names for a video id under an export root: each component as it is when it is a
    plain file name, otherwise percent-encoded (``/`` -> ``%2F``, ``..`` -> ``%2E%2E``), so no id
    can name a path outside the root."""
    out = []
    for p in video_id:
        text = str(p)
        if not safe_part(text):
            text = quote(text, safe=" !#$&'()+,;=@[]^`{}~")
            if set(text) <= {"."}:
                text = text.replace(".", "%2E")
        out.append(text)
    return out


def _layers_to_export(store: MaskStore, layer: str | None) -> list[str]:
    names = store.layer_names()
    if layer is None:
        if len(names) != 1:
            raise InputError(
                f"{store.path} has layers {', '.join(names) or 'none'}: choose one with --layer"
            )
        return names
    if layer not in names:
        raise InputError(f"{store.path}: no layer {layer!r} (it has: {', '.join(names) or 'none'})")
    return [layer]


def unpack_png(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    layer: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> int:
    """Write ``layer`` as a PNG tree ``OUT/<id parts>/<frame name>.png`` (0/255). Returns the
    number of files written (one per stored mask). Bit-exact inverse of :func:`pack_folder` on
    PNG input.

    Nothing is written outside ``out_dir`` whatever the ids and frame patterns in the store (see
    :func:`video_dir_parts`), and nothing at all unless every mask could be written: the tree
    is built in a staging folder and moved into place at the end (with ``overwrite``, into an
    existing folder file by file)."""
    out = Path(out_dir)
    n = 0
    with MaskStore(store_path) as store, staged_dir(out, overwrite=overwrite) as stage:
        (lay,) = _layers_to_export(store, layer)
        seen: dict[tuple[str, ...], str] = {}
        for info, data in progress_bar(
            store.iter_layer(lay),
            total=len(store),
            disable=not progress,
            desc=f"unpack {lay}",
            unit="video",
        ):
            parts = tuple(video_dir_parts(info.video_id))
            if parts in seen:
                raise InputError(
                    f"{store.path}: videos {seen[parts]} and {info.name} would both be written "
                    f"to {'/'.join(parts)}"
                )
            seen[parts] = info.name
            names: dict[str, int] = {}
            for frame in data.frame_index:
                try:
                    name = _frame_name(info.attrs.get("frame_pattern"), int(frame), ".png")  # type: ignore[arg-type]
                except InputError as e:
                    raise InputError(f"{store.path}: video {info.name}: {e}") from None
                if name in names:
                    raise InputError(
                        f"{store.path}: video {info.name}: frames {names[name]} and {int(frame)} "
                        f"would both be written to {name}"
                    )
                names[name] = int(frame)
            d = stage.joinpath(*parts)
            d.mkdir(parents=True, exist_ok=True)
            for i0 in range(0, len(data), _UNPACK_CHUNK):  # a long 1080p video is never whole
                rows = slice(i0, i0 + _UNPACK_CHUNK)
                masks = rle_ops.decode(data.rles[rows], info.height, info.width)
                for frame, m, name in zip(
                    data.frame_index[rows], masks, list(names)[rows], strict=True
                ):
                    ok, buf = cv2.imencode(".png", m * np.uint8(255))
                    if not ok:
                        raise InputError(f"cannot encode PNG for {info.name} frame {frame}")
                    (d / name).write_bytes(buf.tobytes())
                    n += 1
    return n


_UNPACK_CHUNK = 64


def to_coco(store: MaskStore, layer: str) -> dict:
    """The layer as a COCO dict (one category ``person``; one image per stored frame and one
    annotation per non-empty mask, with ``score`` and ``origin`` kept; a frame whose mask is
    empty has an image entry with ``hm_score`` / ``hm_origin`` and no annotation, as COCO
    tools expect -- an empty annotation has no box and breaks evaluation code)."""
    images, anns = [], []
    videos = []
    for info, data in store.iter_layer(layer):
        videos.append(
            {
                "hm_video_id": list(info.video_id),
                "height": info.height,
                "width": info.width,
                "num_frames": info.num_frames,
                "action_type": info.action_type,
                "frame_pattern": info.attrs.get("frame_pattern"),
            }
        )
        folder = "/".join(str(p) for p in info.video_id)
        pattern = info.attrs.get("frame_pattern") or DEFAULT_FRAME_PATTERN + ".jpg"
        for i, frame in enumerate(data.frame_index):
            iid = len(images) + 1
            images.append(
                {
                    "id": iid,
                    "file_name": f"{folder}/{_frame_name(pattern, int(frame), None)}",  # type: ignore[arg-type]
                    "height": info.height,
                    "width": info.width,
                    "hm_video_id": list(info.video_id),
                    "frame_index": int(frame),
                }
            )
            score = float(data.score[i])
            if int(data.area[i]) == 0:
                images[-1]["hm_score"] = None if np.isnan(score) else score
                images[-1]["hm_origin"] = int(data.origin[i])
                continue
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": 1,
                    "segmentation": {
                        "size": [info.height, info.width],
                        "counts": data.rles[i].decode("ascii"),
                    },
                    "area": int(data.area[i]),
                    "bbox": [float(x) for x in data.bbox[i]],
                    "iscrowd": 0,
                    "score": None if np.isnan(score) else score,
                    "origin": int(data.origin[i]),
                }
            )
    return {
        "info": {"description": f"{store.name} layer {layer}", "hm_layer": layer},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        "videos": videos,
    }


def unpack_coco(
    store_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layer: str | None = None,
    overwrite: bool = False,
) -> int:
    """Write ``layer`` as one COCO JSON file (atomically). Returns masks written."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        out = out / "annotations.json" if out.is_dir() or not out.suffix else out
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists: pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with MaskStore(store_path) as store:
        (lay,) = _layers_to_export(store, layer)
        coco = to_coco(store, lay)
    atomic_write_bytes(out, json.dumps(coco).encode("utf-8"))
    return len(coco["annotations"])
