"""Full schema check of an -HM store: one message per problem found."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pycocotools.mask as mask_utils

from hmtools.errors import InputError, SchemaError
from hmtools.masks import rle as rle_ops
from hmtools.masks.schema import (
    LAYER_DATASETS,
    ORIGINS,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    VIDEOS_GROUP,
    format_video_id,
    video_id_from_json,
    video_key,
)
from hmtools.progress import progress_bar

_MAX_PER_LAYER = 5  # RLE problems reported per layer before summarising


def _canonical(rles: list[bytes], h: int, w: int) -> bool:
    """Every RLE decodes to an H x W 0/1 mask that re-encodes to the same bytes; checked in
    batches (a long 1080p video is never decoded whole)."""
    step = rle_ops.PYCOCOTOOLS_MAX_BATCH
    for i in range(0, len(rles), step):
        part = rles[i : i + step]
        try:
            dec = mask_utils.decode([{"size": [h, w], "counts": r} for r in part])
        except (ValueError, TypeError):
            return False
        if dec.max(initial=0) > 1:
            return False
        enc = mask_utils.encode(np.asfortranarray(dec))
        if any(e["counts"] != r for e, r in zip(enc, part, strict=True)):
            return False
    return True


def _check_rles(
    where: str, rles: list[bytes], frames: np.ndarray, h: int, w: int, area: np.ndarray | None
) -> list[str]:
    problems = []
    if not _canonical(rles, h, w):
        bad = 0
        for fr, r in zip(frames, rles, strict=True):
            try:
                rle_ops.check_counts(r, h, w)
            except InputError as e:
                bad += 1
                if bad <= _MAX_PER_LAYER:
                    problems.append(f"{where} frame {int(fr)}: {e}")
        if bad > _MAX_PER_LAYER:
            problems.append(f"{where}: {bad - _MAX_PER_LAYER} more malformed RLEs")
        return problems
    if area is not None and len(area) == len(rles):
        true_area = rle_ops.area(rles, h, w)
        wrong = np.nonzero(true_area != area)[0]
        if len(wrong):
            problems.append(
                f"{where} frame {int(frames[wrong[0]])}: area {int(area[wrong[0]])} but the RLE "
                f"has {int(true_area[wrong[0]])} pixels ({len(wrong)} frames wrong)"
            )
    return problems


def _check_layer(where: str, g: h5py.Group, h: int, w: int, num_frames: int) -> list[str]:
    problems = []
    arrays = {}
    for name, dtype in LAYER_DATASETS.items():
        if name not in g or not isinstance(g[name], h5py.Dataset):
            problems.append(f"{where}: dataset {name!r} is missing")
            continue
        ds = g[name]
        if ds.dtype != np.dtype(dtype):
            problems.append(f"{where}/{name}: dtype {ds.dtype}, expected {dtype}")
        try:
            arrays[name] = ds[()]
        except OSError as e:  # a compressed chunk that no longer decompresses: bit rot, bad copy
            problems.append(
                f"{where}/{name}: cannot be read, the file is damaged ({str(e).strip()})"
            )
    if problems:
        return problems
    n = len(arrays["frame_index"])
    for name in ("area", "score", "origin"):
        if arrays[name].shape != (n,):
            problems.append(f"{where}/{name}: shape {arrays[name].shape}, expected ({n},)")
    if arrays["bbox"].shape != (n, 4):
        problems.append(f"{where}/bbox: shape {arrays['bbox'].shape}, expected ({n}, 4)")
    off = arrays["rle_offsets"]
    total = len(arrays["rle_bytes"])
    if off.shape != (n + 1,):
        problems.append(f"{where}/rle_offsets: length {len(off)}, expected {n + 1}")
        return problems
    if off[0] != 0 or off[-1] != total or np.any(np.diff(off) < 0):
        problems.append(
            f"{where}/rle_offsets: must start at 0, never decrease and end at len(rle_bytes)={total}"
        )
        return problems
    fi = arrays["frame_index"]
    if n > 1 and np.any(np.diff(fi) == 0):
        dup = np.unique(fi[1:][np.diff(fi) == 0])
        problems.append(
            f"{where}/frame_index: frame {int(dup[0])} appears more than once "
            f"({len(dup)} repeated frame numbers)"
        )
    if n > 1 and np.any(np.diff(fi) < 0):
        i = int(np.nonzero(np.diff(fi) < 0)[0][0])
        problems.append(
            f"{where}/frame_index: not sorted and unique (frame {int(fi[i])} then {int(fi[i + 1])})"
        )
    if num_frames and n > num_frames:
        problems.append(f"{where}: {n} masks but the video has num_frames={num_frames}")
    bad_origin = ~np.isin(arrays["origin"], list(ORIGINS))
    if np.any(bad_origin):
        problems.append(
            f"{where}/origin: unknown code {int(arrays['origin'][bad_origin][0])} "
            f"(known: {sorted(ORIGINS)})"
        )
    blob = arrays["rle_bytes"].tobytes()
    rles = [blob[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]
    area = arrays["area"] if arrays["area"].shape == (n,) else None
    problems += _check_rles(where, rles, fi, h, w, area)
    return problems


def validate_store(path: str | os.PathLike, progress: bool = False) -> list[str]:
    """Check the whole schema of the store at ``path``; return the problems (empty = valid)."""
    path = Path(path)
    if not path.exists():
        return [f"{path}: no such file"]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [f"{path}: not a readable HDF5 file ({e})"]
    problems: list[str] = []
    with f:
        schema = f.attrs.get("schema")
        schema = schema.decode() if isinstance(schema, bytes) else schema
        if schema != SCHEMA_NAME:
            return [f"{path}: not an -HM store (schema attribute {schema!r})"]
        version = f.attrs.get("schema_version")
        if version is None or int(version) != SCHEMA_VERSION:
            return [
                f"{path}: schema_version {None if version is None else int(version)}, this hmtools reads {SCHEMA_VERSION}"
            ]
        if VIDEOS_GROUP not in f:
            return [f"{path}: group /{VIDEOS_GROUP} is missing"]
        vg = f[VIDEOS_GROUP]
        for key in progress_bar(
            sorted(vg.keys()), desc="validate", unit="video", disable=not progress
        ):
            g = vg[key]
            where = f"video {key}"
            missing = [a for a in ("video_id", "height", "width") if a not in g.attrs]
            if missing:
                problems.append(f"{where}: attributes missing: {', '.join(missing)}")
                continue
            try:
                vid = video_id_from_json(g.attrs["video_id"])
            except SchemaError as e:
                problems.append(f"{where}: {e}")
                continue
            if video_key(vid) != key:
                problems.append(f"{where}: key does not match video_id {list(vid)}")
            where = f"video {format_video_id(vid)}"
            h, w = int(g.attrs["height"]), int(g.attrs["width"])
            if h <= 0 or w <= 0:
                problems.append(f"{where}: bad size {h}x{w}")
                continue
            for layer in sorted(g.keys()):
                if not isinstance(g[layer], h5py.Group):
                    problems.append(f"{where}: {layer!r} is not a layer group")
                    continue
                problems += _check_layer(
                    f"{where} layer {layer}", g[layer], h, w, int(g.attrs.get("num_frames", 0))
                )
    return problems
