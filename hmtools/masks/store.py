"""Reading and writing -HM stores (one HDF5 file per dataset, see :mod:`hmtools.masks.schema`).

Reading (:class:`MaskStore`) is random access: one video's layer for frames ``[a, b)`` reads the
slice of ``frame_index``/``rle_offsets`` and only the bytes of those masks; other videos are not
touched. Writing (:class:`StoreWriter`) never modifies the target in place: it writes a temporary
file next to it (a copy of the target when appending) and renames it over the target on commit,
so an interrupted write leaves the target exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hmtools.errors import DamagedStoreError, InputError, SchemaError
from hmtools.fsutil import publish
from hmtools.masks import rle as rle_ops
from hmtools.masks.schema import (
    LAYER_DATASETS,
    ORIGIN_PSEUDO,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    VIDEOS_GROUP,
    VideoId,
    format_video_id,
    normalize_video_id,
    parse_video_id_arg,
    video_id_from_json,
    video_id_from_key,
    video_id_to_json,
    video_key,
)

_CHUNK_BYTES = 1 << 16
_RESERVED_ATTRS = {"video_id", "height", "width", "num_frames", "action_type"}


@dataclass
class LayerData:
    """The masks of one video in one layer, as stored (RLE counts, no decoding)."""

    frame_index: np.ndarray  # int32 [n], sorted, unique
    rles: list[bytes]  # COCO compressed RLE counts, one per frame
    area: np.ndarray  # int32 [n]
    bbox: np.ndarray  # float32 [n, 4]
    score: np.ndarray  # float32 [n]
    origin: np.ndarray  # uint8 [n]
    # (H, W) when every RLE was just encoded here by pycocotools from H x W masks
    # (:meth:`from_masks`): canonical by construction, so writing them into an H x W video needs
    # no decode/re-encode check (1.5 ms a 720p mask); anything else is checked
    encoded_size: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.rles)

    @classmethod
    def from_rles(
        cls,
        frame_index: Sequence[int] | np.ndarray,
        rles: Sequence[bytes],
        height: int,
        width: int,
        score: Sequence[float] | np.ndarray | float | None = None,
        origin: Sequence[int] | np.ndarray | int = ORIGIN_PSEUDO,
    ) -> LayerData:
        """Build from RLE counts; area and bbox are computed on the RLEs. Sorts by frame."""
        fi = np.asarray(frame_index, np.int64).reshape(-1)
        n = len(fi)
        if len(rles) != n:
            raise ValueError(f"{n} frame numbers but {len(rles)} masks")
        sc = (
            np.full(n, np.nan, np.float32)
            if score is None
            else np.broadcast_to(np.asarray(score, np.float32), (n,))
        )
        og = np.broadcast_to(np.asarray(origin, np.uint8), (n,))
        order = np.argsort(fi, kind="stable")
        fi = fi[order]
        if n and np.any(np.diff(fi) == 0):
            dup = int(fi[np.nonzero(np.diff(fi) == 0)[0][0]])
            raise InputError(f"frame {dup} appears twice")
        if n and (fi[0] < np.iinfo(np.int32).min or fi[-1] > np.iinfo(np.int32).max):
            raise InputError("frame numbers do not fit int32")
        rl = [bytes(rles[i]) for i in order]
        return cls(
            frame_index=fi.astype(np.int32),
            rles=rl,
            area=rle_ops.area(rl, height, width).astype(np.int32),
            bbox=rle_ops.bbox(rl, height, width),
            score=np.array(sc[order], np.float32),
            origin=np.array(og[order], np.uint8),
        )

    @classmethod
    def from_masks(
        cls,
        frame_index: Sequence[int] | np.ndarray,
        masks: np.ndarray,
        score: Sequence[float] | np.ndarray | float | None = None,
        origin: Sequence[int] | np.ndarray | int = ORIGIN_PSEUDO,
    ) -> LayerData:
        """Build from binary masks ``[T, H, W]`` (nonzero = foreground)."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be [T,H,W], got {masks.shape}")
        h, w = masks.shape[1], masks.shape[2]
        data = cls.from_rles(frame_index, rle_ops.encode(masks), h, w, score, origin)
        data.encoded_size = (int(h), int(w))
        return data

    @classmethod
    def empty(cls) -> LayerData:
        return cls(
            np.zeros(0, np.int32),
            [],
            np.zeros(0, np.int32),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.uint8),
        )

    def take(self, idx: np.ndarray | Sequence[int]) -> LayerData:
        """The frames at positions ``idx`` (kept in sorted frame order)."""
        idx = np.sort(np.asarray(idx, np.int64))
        return LayerData(
            self.frame_index[idx],
            [self.rles[i] for i in idx],
            self.area[idx],
            self.bbox[idx],
            self.score[idx],
            self.origin[idx],
        )

    @staticmethod
    def concat(parts: Sequence[LayerData]) -> LayerData:
        """Concatenate and sort by frame (frames must not repeat)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return LayerData.empty()
        fi = np.concatenate([p.frame_index for p in parts])
        order = np.argsort(fi, kind="stable")
        rles = [r for p in parts for r in p.rles]
        out = LayerData(
            fi,
            rles,
            np.concatenate([p.area for p in parts]),
            np.concatenate([p.bbox for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.origin for p in parts]),
        ).take(order)
        if len(out) > 1 and np.any(np.diff(out.frame_index) == 0):
            raise InputError("frames repeat across the parts being combined")
        return out

    def iou_with(self, other: LayerData, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(frames, IoU)`` over the frames both layers have, computed on the RLEs."""
        frames, ia, ib = np.intersect1d(self.frame_index, other.frame_index, return_indices=True)
        if not len(frames):
            return frames, np.zeros(0, np.float64)
        return frames, rle_ops.iou(
            [self.rles[i] for i in ia], [other.rles[i] for i in ib], height, width
        )

    def decode(self, height: int, width: int) -> np.ndarray:
        """All masks as ``uint8 [n, H, W]``."""
        return rle_ops.decode(self.rles, height, width)


@dataclass
class VideoInfo:
    """A store video's metadata (the group's attributes) and its layer names."""

    key: str
    video_id: VideoId
    height: int
    width: int
    num_frames: int
    action_type: str
    layers: list[str]
    attrs: dict[str, object] = field(default_factory=dict)  # optional attrs (frames_dir, ...)

    @property
    def name(self) -> str:
        return format_video_id(self.video_id)


def _attr_str(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def check_root(f: h5py.File, path: str | os.PathLike) -> None:
    """Raise :class:`SchemaError` unless ``f`` is an -HM store of this schema version."""
    schema = _attr_str(f.attrs.get("schema", ""))
    if schema != SCHEMA_NAME:
        raise SchemaError(f"{path}: not an -HM mask store (schema attribute {schema!r})")
    version = f.attrs.get("schema_version")
    version = None if version is None else int(version)
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: schema_version {version} is not supported (this hmtools reads "
            f"version {SCHEMA_VERSION}); convert the file with the hmtools release that wrote it"
        )


def _video_info(key: str, g: h5py.Group) -> VideoInfo:
    extra = {k: (_attr_str(v) if isinstance(v, (bytes, str)) else v) for k, v in g.attrs.items()}
    for k in _RESERVED_ATTRS:
        extra.pop(k, None)
    return VideoInfo(
        key=key,
        video_id=video_id_from_json(g.attrs["video_id"]),
        height=int(g.attrs["height"]),
        width=int(g.attrs["width"]),
        num_frames=int(g.attrs.get("num_frames", 0)),
        action_type=_attr_str(g.attrs.get("action_type", "")),
        layers=sorted(k for k in g if isinstance(g[k], h5py.Group)),
        attrs=extra,
    )


def _frame_slice(frame_index: np.ndarray, start: int | None, stop: int | None) -> tuple[int, int]:
    i0 = 0 if start is None else int(np.searchsorted(frame_index, start, "left"))
    i1 = len(frame_index) if stop is None else int(np.searchsorted(frame_index, stop, "left"))
    return i0, max(i0, i1)


def _where(g: h5py.Group) -> str:
    """``FILE: video V layer L`` of a layer group, for messages."""
    parts = g.name.strip("/").split("/")
    try:
        video = format_video_id(video_id_from_key(parts[1]))
    except (IndexError, SchemaError):
        video = g.name
    layer = parts[2] if len(parts) > 2 else "?"
    return f"{g.file.filename}: video {video} layer {layer!r}"


def _read(g: h5py.Group, name: str, sel: object = ()) -> np.ndarray:
    """``g[name][sel]``; a dataset HDF5 cannot read (a damaged compressed chunk: bit rot, a bad
    copy) raises :class:`DamagedStoreError` naming the file, video, layer and dataset."""
    try:
        return g[name][sel]
    except (OSError, KeyError, ValueError) as e:
        raise DamagedStoreError(
            f"{_where(g)}: dataset {name!r} cannot be read ({str(e).strip() or type(e).__name__});"
            " the file is damaged: `hmtools validate` lists every damaged layer"
        ) from None


def _read_rles(
    g: h5py.Group, start: int | None, stop: int | None
) -> tuple[np.ndarray, list[bytes], int, int]:
    """Frame numbers and RLE counts of frames in ``[start, stop)``, reading only their bytes;
    also the row range ``(i0, i1)`` for the per-mask arrays."""
    fi = _read(g, "frame_index")
    i0, i1 = _frame_slice(fi, start, stop)
    if i1 == i0:
        return fi[i0:i1].astype(np.int32), [], i0, i1
    off = _read(g, "rle_offsets", slice(i0, i1 + 1))
    base = int(off[0])
    blob = _read(g, "rle_bytes", slice(base, int(off[-1]))).tobytes()
    rles = [blob[int(a) - base : int(b) - base] for a, b in zip(off[:-1], off[1:], strict=True)]
    return fi[i0:i1].astype(np.int32), rles, i0, i1


def _read_layer(g: h5py.Group, start: int | None, stop: int | None) -> LayerData:
    fi, rles, i0, i1 = _read_rles(g, start, stop)
    if not rles:
        return LayerData.empty()
    rows = slice(i0, i1)
    return LayerData(
        frame_index=fi,
        rles=rles,
        area=_read(g, "area", rows),
        bbox=_read(g, "bbox", rows),
        score=_read(g, "score", rows),
        origin=_read(g, "origin", rows),
    )


class MaskStore:
    """Read-only access to an -HM store.

    >>> with MaskStore("FineDiving-HM.h5") as store:               # doctest: +SKIP
    ...     frames, masks = store.read_masks(("FINADivingWorldCup2021_Men3m_final_r1", 0), "gtm")
    ...     masks.shape                                            # (T, H, W) uint8 0/1
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise SchemaError(f"{self.path}: not a readable HDF5 file ({e})") from None
        try:
            check_root(self._f, self.path)
        except SchemaError:
            self._f.close()
            raise
        self._videos = self._f.get(VIDEOS_GROUP)

    # -- context management ------------------------------------------------------------------
    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> MaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return _attr_str(self._f.attrs.get("name", ""))

    @property
    def created(self) -> str:
        return _attr_str(self._f.attrs.get("created", ""))

    def keys(self) -> list[str]:
        return sorted(self._videos.keys()) if self._videos is not None else []

    def video_ids(self) -> list[VideoId]:
        return [self.info_by_key(k).video_id for k in self.keys()]

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        """Iterate over video keys (like a dict)."""
        return iter(self.keys())

    def __contains__(self, video_id: object) -> bool:
        try:
            return self._key(video_id) is not None  # type: ignore[arg-type]
        except SchemaError:
            return False

    def _key(self, video_id: Sequence[str | int] | str | int) -> str | None:
        """The store key of ``video_id``: a tuple/list id, or a string as the reports print it
        (``name/clip``, digits as numbers, or JSON list text) -- ``None`` when absent."""
        if self._videos is None:
            return None
        key = video_key(video_id)
        if key in self._videos:
            return key
        if isinstance(video_id, str) and ("/" in video_id or video_id.lstrip().startswith("[")):
            try:
                alt = video_key(parse_video_id_arg(video_id))
            except SchemaError:
                return None
            if alt in self._videos:
                return alt
        return None

    def _group(self, video_id: Sequence[str | int] | str | int) -> h5py.Group:
        key = self._key(video_id)
        if key is None:
            shown = (
                video_id
                if isinstance(video_id, str)
                else format_video_id(normalize_video_id(video_id))
            )
            raise InputError(f"{self.path}: no video {shown}")
        return self._videos[key]  # type: ignore[index]

    def info(self, video_id: Sequence[str | int] | str | int) -> VideoInfo:
        """A video's metadata; ``video_id`` as a tuple or as the reports print it
        (``name/clip``)."""
        g = self._group(video_id)
        return _video_info(self._key(video_id), g)  # type: ignore[arg-type]

    def info_by_key(self, key: str) -> VideoInfo:
        return _video_info(key, self._videos[key])

    def videos(self) -> Iterator[VideoInfo]:
        """Every video's metadata, in key order."""
        for k in self.keys():
            yield self.info_by_key(k)

    def layer_names(self) -> list[str]:
        names: set[str] = set()
        for k in self.keys():
            names.update(self.info_by_key(k).layers)
        return sorted(names)

    def has_layer(self, video_id: Sequence[str | int] | str | int, layer: str) -> bool:
        return layer in self._group(video_id)

    def frame_index(self, video_id: Sequence[str | int] | str | int, layer: str) -> np.ndarray:
        return _read(self._layer_group(video_id, layer), "frame_index")

    def _layer_group(self, video_id: Sequence[str | int] | str | int, layer: str) -> h5py.Group:
        g = self._group(video_id)
        if layer not in g:
            raise InputError(
                f"{self.path}: video {format_video_id(normalize_video_id(video_id))} has no "
                f"layer {layer!r} (it has: {', '.join(sorted(g.keys())) or 'none'})"
            )
        return g[layer]

    # -- masks ---------------------------------------------------------------------------------
    def read_layer(
        self,
        video_id: Sequence[str | int] | str | int,
        layer: str,
        start: int | None = None,
        stop: int | None = None,
    ) -> LayerData:
        """RLEs and per-mask arrays of frames with ``start <= frame number < stop``."""
        return _read_layer(self._layer_group(video_id, layer), start, stop)

    def read_masks(
        self,
        video_id: Sequence[str | int] | str | int,
        layer: str,
        start: int | None = None,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_index int32 [T], masks uint8 [T, H, W])`` for frames in ``[start, stop)``."""
        g = self._group(video_id)
        fi, rles, _, _ = _read_rles(self._layer_group(video_id, layer), start, stop)
        return fi, rle_ops.decode(rles, int(g.attrs["height"]), int(g.attrs["width"]))

    def iter_layer(self, layer: str) -> Iterator[tuple[VideoInfo, LayerData]]:
        """``(info, data)`` for every video that has ``layer``, in key order."""
        for k in self.keys():
            info = self.info_by_key(k)
            if layer in info.layers:
                yield info, _read_layer(self._videos[k][layer], None, None)


# ----------------------------------------------------------------------------------------------
# writing


def _stale_temp_cleanup(target: Path) -> None:
    """Remove temporary files of earlier writers of ``target`` whose process is gone."""
    for p in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            pid = int(p.name[len(target.name) + 2 :].split(".")[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                p.unlink()
        except PermissionError:
            pass


def _write_dataset(g: h5py.Group, name: str, data: np.ndarray, compression: str | None) -> None:
    data = np.ascontiguousarray(data, dtype=LAYER_DATASETS[name])
    if data.size == 0 or compression is None:
        g.create_dataset(name, data=data)
        return
    if name == "rle_bytes":
        chunks: tuple[int, ...] = (min(len(data), _CHUNK_BYTES),)
    else:
        rows = max(1, min(len(data), _CHUNK_BYTES // max(1, data[:1].nbytes)))
        chunks = (rows, *data.shape[1:])
    opts = {"compression_opts": 4} if compression == "gzip" else {}
    g.create_dataset(name, data=data, chunks=chunks, compression=compression, **opts)


def write_layer_group(
    parent: h5py.Group, layer: str, data: LayerData, compression: str | None = "gzip"
) -> None:
    """Write ``data`` as ``parent/<layer>`` (which must not exist)."""
    g = parent.create_group(layer)
    lengths = np.fromiter((len(r) for r in data.rles), np.int64, len(data.rles))
    offsets = np.zeros(len(data.rles) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    blob = np.frombuffer(b"".join(data.rles), np.uint8)
    _write_dataset(g, "frame_index", data.frame_index, compression)
    _write_dataset(g, "rle_offsets", offsets, compression)
    _write_dataset(g, "rle_bytes", blob, compression)
    _write_dataset(g, "area", data.area, compression)
    _write_dataset(g, "bbox", np.asarray(data.bbox).reshape(-1, 4), compression)
    _write_dataset(g, "score", data.score, compression)
    _write_dataset(g, "origin", data.origin, compression)


class StoreWriter:
    """Atomic writer of an -HM store.

    ``mode="create"`` starts an empty store (refusing an existing target unless
    ``overwrite=True``); ``mode="append"`` starts from a copy of the existing target. Nothing
    reaches ``path`` until :meth:`commit` (called by ``__exit__`` when no exception occurred);
    on any exception, including ``KeyboardInterrupt``, the temporary file is removed and the
    target is left exactly as it was.

    >>> with StoreWriter("Synth-HM.h5", name="Synth-HM") as w:           # doctest: +SKIP
    ...     w.add_video(("clip", 0), height=256, width=455, num_frames=100)
    ...     w.write_layer(("clip", 0), "gtm", LayerData.from_masks(frames, masks))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        mode: str = "create",
        overwrite: bool = False,
        compression: str | None = "gzip",
    ):
        if mode not in ("create", "append"):
            raise ValueError(f"mode must be 'create' or 'append', not {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.overwrite = overwrite
        #: what the "target exists" error tells the user to do (the command's own options)
        self.exists_hint = "pass --overwrite to replace it"
        self.compression = compression
        self._name = name
        self._f: h5py.File | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> StoreWriter:
        self.open()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def open(self) -> None:
        target = self.path
        if self.mode == "create" and target.exists() and not self.overwrite:
            raise InputError(f"{target} exists: {self.exists_hint}")
        if self.mode == "append" and not target.exists():
            raise InputError(f"{target}: cannot append, no such file")
        target.parent.mkdir(parents=True, exist_ok=True)
        _stale_temp_cleanup(target)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            if self.mode == "append":
                with MaskStore(target):  # checks the schema before we copy it
                    pass
                shutil.copyfile(target, self._tmp)
                self._f = h5py.File(self._tmp, "r+")
                if self._name:
                    self._f.attrs["name"] = self._name
            else:
                self._f = h5py.File(self._tmp, "w", libver=("v110", "latest"))
                self._f.attrs["schema"] = SCHEMA_NAME
                self._f.attrs["schema_version"] = SCHEMA_VERSION
                self._f.attrs["name"] = self._name or target.stem
                self._f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
                self._f.create_group(VIDEOS_GROUP)
        except BaseException:
            self.abort()
            raise

    @property
    def file(self) -> h5py.File:
        if self._f is None:
            raise RuntimeError("StoreWriter is not open")
        return self._f

    def has_video(self, video_id: Sequence[str | int] | str | int) -> bool:
        return video_key(video_id) in self.file[VIDEOS_GROUP]

    def has_layer(self, video_id: Sequence[str | int] | str | int, layer: str) -> bool:
        key = video_key(video_id)
        vg = self.file[VIDEOS_GROUP]
        return key in vg and layer in vg[key]

    def read_layer(self, video_id: Sequence[str | int] | str | int, layer: str) -> LayerData:
        """What the file being written holds for ``video_id``/``layer`` (empty if nothing)."""
        vg = self.file[VIDEOS_GROUP]
        key = video_key(video_id)
        if key not in vg or layer not in vg[key]:
            return LayerData.empty()
        return _read_layer(vg[key][layer], None, None)

    def video_info(self, video_id: Sequence[str | int] | str | int) -> VideoInfo:
        key = video_key(video_id)
        return _video_info(key, self.file[VIDEOS_GROUP][key])

    def add_video(
        self,
        video_id: Sequence[str | int] | str | int,
        *,
        height: int,
        width: int,
        num_frames: int = 0,
        action_type: str = "",
        **attrs: object,
    ) -> str:
        """Create the video group (or check that an existing one has the same size).

        Extra keyword attributes (``frames_dir``, ``video_path``, ``frame_pattern``) are stored
        as given; ``None`` values are skipped. Returns the video key.
        """
        vid = normalize_video_id(video_id)
        key = video_key(vid)
        vg = self.file[VIDEOS_GROUP]
        if height <= 0 or width <= 0:
            raise InputError(f"video {format_video_id(vid)}: bad size {height}x{width}")
        if key in vg:
            g = vg[key]
            if (int(g.attrs["height"]), int(g.attrs["width"])) != (height, width):
                raise InputError(
                    f"video {format_video_id(vid)}: size {height}x{width} differs from the "
                    f"store's {int(g.attrs['height'])}x{int(g.attrs['width'])}"
                )
            if num_frames > int(g.attrs.get("num_frames", 0)):
                g.attrs["num_frames"] = int(num_frames)
            if action_type and not _attr_str(g.attrs.get("action_type", "")):
                g.attrs["action_type"] = action_type
        else:
            g = vg.create_group(key)
            g.attrs["video_id"] = video_id_to_json(vid)
            g.attrs["height"] = int(height)
            g.attrs["width"] = int(width)
            g.attrs["num_frames"] = int(num_frames)
            g.attrs["action_type"] = str(action_type)
        for k, v in attrs.items():
            if v is not None:
                g.attrs[k] = v if not isinstance(v, Path) else str(v)
        return key

    def write_layer(
        self,
        video_id: Sequence[str | int] | str | int,
        layer: str,
        data: LayerData,
        *,
        replace: bool = False,
    ) -> None:
        """Write one video's layer (the video must have been added). Checks every RLE's size
        (except RLEs :meth:`LayerData.from_masks` has just encoded from masks of the video's
        size)."""
        vid = normalize_video_id(video_id)
        key = video_key(vid)
        vg = self.file[VIDEOS_GROUP]
        if key not in vg:
            raise InputError(f"video {format_video_id(vid)}: add_video() before write_layer()")
        if not layer or "/" in layer or layer.startswith("."):
            raise InputError(f"bad layer name {layer!r}")
        g = vg[key]
        h, w = int(g.attrs["height"]), int(g.attrs["width"])
        if data.encoded_size != (h, w):  # not just encoded from masks of this size: check all
            for fi, r in zip(data.frame_index, data.rles, strict=True):
                try:
                    rle_ops.check_counts(r, h, w)
                except InputError as e:
                    raise InputError(f"video {format_video_id(vid)} frame {int(fi)}: {e}") from None
        if layer in g:
            if not replace:
                raise InputError(
                    f"video {format_video_id(vid)} already has layer {layer!r} in {self.path}"
                )
            del g[layer]
        write_layer_group(g, layer, data, self.compression)
        if len(data) > int(g.attrs.get("num_frames", 0)):
            g.attrs["num_frames"] = len(data)

    def commit(self) -> Path:
        """Flush, fsync and rename the temporary file over the target."""
        if self._f is None or self._tmp is None:
            raise RuntimeError("StoreWriter is not open")
        try:
            self._f.flush()
            self._f.close()
            self._f = None
            with open(self._tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if self.mode == "create" and self.path.exists() and not self.overwrite:
                raise InputError(f"{self.path} appeared while writing; not replacing it")
            publish(self._tmp, self.path)  # the mode open() would give, not mkstemp's 0600
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard everything written; the target stays as it was."""
        if self._f is not None:
            with contextlib.suppress(Exception):
                self._f.close()
            self._f = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None
