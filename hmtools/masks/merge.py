"""Combining stores (shards of parallel runs) and summarising a store."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmtools.errors import ConflictError, InputError
from hmtools.masks.schema import LAYER_GTM, LAYER_PM
from hmtools.masks.store import LayerData, MaskStore, StoreWriter, _read
from hmtools.progress import progress_bar


def _combine_layer(where: str, parts: list[tuple[Path, LayerData]]) -> LayerData:
    """Union of several shards' masks of one video/layer; identical duplicates are fine."""
    cat = {
        name: np.concatenate([getattr(d, name) for _, d in parts])
        for name in ("frame_index", "area", "bbox", "score", "origin")
    }
    rles = [r for _, d in parts for r in d.rles]
    src = [p for p, d in parts for _ in range(len(d))]
    part = [k for k, (_, d) in enumerate(parts) for _ in range(len(d))]
    keep: list[int] = []
    for k in np.argsort(cat["frame_index"], kind="stable").tolist():
        if keep and cat["frame_index"][keep[-1]] == cat["frame_index"][k]:
            j = keep[-1]
            if part[j] == part[k]:  # one store holding a frame twice: damaged, not a conflict
                raise InputError(
                    f"{src[k]}: {where} holds frame {int(cat['frame_index'][k])} twice (the "
                    "store violates the schema: `hmtools validate` lists its problems)"
                )
            if rles[j] != rles[k] or cat["origin"][j] != cat["origin"][k]:
                raise ConflictError(
                    f"{where} frame {int(cat['frame_index'][k])}: {src[j]} and {src[k]} hold "
                    "different masks; merge refuses to choose (remove one shard's copy first)"
                )
            continue
        keep.append(k)
    return LayerData(
        cat["frame_index"][keep],
        [rles[k] for k in keep],
        cat["area"][keep],
        cat["bbox"][keep],
        cat["score"][keep],
        cat["origin"][keep],
    )


def merge_stores(
    shards: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Merge shard stores into ``out``. Frames present in several shards must hold the same
    mask (else :class:`ConflictError`, and nothing is written). Returns counts."""
    if not shards:
        raise InputError("merge needs at least one input store")
    paths = [Path(s) for s in shards]
    if Path(out).resolve() in {p.resolve() for p in paths}:
        raise InputError(f"{out} is one of the inputs; write the merge to a new file")
    stats = {"videos": 0, "masks": 0, "shards": len(paths)}
    with ExitStack() as stack:
        stores = [stack.enter_context(MaskStore(p)) for p in paths]
        owners: dict[str, list[MaskStore]] = defaultdict(list)
        for s in stores:
            for k in s:
                owners[k].append(s)
        with StoreWriter(out, name=name or stores[0].name, overwrite=overwrite) as w:
            for key in progress_bar(
                sorted(owners), desc="merge", unit="video", disable=not progress
            ):
                infos = [(s, s.info_by_key(key)) for s in owners[key]]
                s0, i0 = infos[0]
                for s, info in infos[1:]:
                    if (info.height, info.width) != (i0.height, i0.width):
                        raise ConflictError(
                            f"video {i0.name}: {s0.path} says {i0.width}x{i0.height}, "
                            f"{s.path} says {info.width}x{info.height}"
                        )
                action = next((i.action_type for _, i in infos if i.action_type), "")
                extra = {}
                for _, info in infos:
                    for k, v in info.attrs.items():
                        extra.setdefault(k, v)
                w.add_video(
                    i0.video_id,
                    height=i0.height,
                    width=i0.width,
                    num_frames=max(i.num_frames for _, i in infos),
                    action_type=action,
                    **extra,
                )
                layers = sorted({lay for _, i in infos for lay in i.layers})
                for layer in layers:
                    parts = [
                        (s.path, s.read_layer(i.video_id, layer))
                        for s, i in infos
                        if layer in i.layers
                    ]
                    data = _combine_layer(f"video {i0.name} layer {layer}", parts)
                    w.write_layer(i0.video_id, layer, data)
                    stats["masks"] += len(data)
                stats["videos"] += 1
    return stats


@dataclass
class StoreSummary:
    """What ``hmtools info`` prints."""

    path: str
    name: str
    schema_version: int
    created: str
    file_bytes: int
    videos: int
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    frames_with_both: int = 0  # frames that have a mask in both pm and gtm
    action_types: dict[str, int] = field(default_factory=dict)

    @property
    def masks(self) -> int:
        return int(sum(v["masks"] for v in self.layers.values()))

    @property
    def bytes_per_mask(self) -> float:
        return self.file_bytes / self.masks if self.masks else float("nan")


def summarize_store(path: str | os.PathLike) -> StoreSummary:
    """Counts per layer, frames with both ``pm`` and ``gtm``, file size and bytes per mask.

    Reads only ``frame_index`` and ``rle_offsets`` of each layer (no RLE bytes)."""
    path = Path(path)
    with MaskStore(path) as store:
        s = StoreSummary(
            path=str(path),
            name=store.name,
            schema_version=1,
            created=store.created,
            file_bytes=path.stat().st_size,
            videos=len(store),
        )
        for info in store.videos():
            s.action_types[info.action_type or "?"] = (
                s.action_types.get(info.action_type or "?", 0) + 1
            )
            frames = {}
            for layer in info.layers:
                g = store._layer_group(info.video_id, layer)
                fi = _read(g, "frame_index")
                off = _read(g, "rle_offsets")
                d = s.layers.setdefault(layer, {"videos": 0, "masks": 0, "rle_bytes": 0})
                d["videos"] += 1
                d["masks"] += len(fi)
                d["rle_bytes"] += int(off[-1]) if len(off) else 0
                frames[layer] = fi
            if LAYER_PM in frames and LAYER_GTM in frames:
                s.frames_with_both += len(np.intersect1d(frames[LAYER_PM], frames[LAYER_GTM]))
        for d in s.layers.values():
            d["rle_bytes_per_mask"] = d["rle_bytes"] / d["masks"] if d["masks"] else float("nan")
    return s


def format_summary(s: StoreSummary) -> str:
    lines = [
        f"{s.path}: {s.name!r}, schema v{s.schema_version}, created {s.created}",
        f"  videos: {s.videos}   masks: {s.masks}   file: {s.file_bytes / 1e6:.2f} MB   "
        f"bytes/mask: {s.bytes_per_mask:.0f}",
    ]
    for layer, d in sorted(s.layers.items()):
        lines.append(
            f"  layer {layer:<8} videos {int(d['videos']):>6}  masks {int(d['masks']):>9}  "
            f"RLE bytes/mask {d['rle_bytes_per_mask']:.0f}"
        )
    lines.append(f"  frames with both pm and gtm: {s.frames_with_both}")
    if len(s.action_types) > 1 or "?" not in s.action_types:
        top = sorted(s.action_types.items(), key=lambda kv: -kv[1])[:10]
        lines.append(
            "  action types: "
            + ", ".join(f"{k} ({v})" for k, v in top)
            + (" ..." if len(s.action_types) > 10 else "")
        )
    return "\n".join(lines)
