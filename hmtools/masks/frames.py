"""Frame file naming: frame numbers from file names, and the folder-tree layouts of datasets.

One rule everywhere (README, "The -HM HDF5 schema"): a frame's number is the last run of digits
in its file name stem (FineDiving ``00489.jpg`` -> 489, AQA-7 ``img_00012.jpg`` -> 12). When any
file of a folder has no digits, every file gets its 0-based position in sorted name order.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hmtools.errors import InputError
from hmtools.masks.schema import VideoId, normalize_video_id

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
LAYOUTS = ("auto", "finediving", "folder")
_DIGITS = re.compile(r"(\d+)(?!.*\d)")
DEFAULT_FRAME_PATTERN = "{:05d}"


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (hidden files skipped), sorted by name."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise InputError(f"{folder}: cannot list folder ({e.strerror})") from None
    return sorted(
        (
            Path(e.path)
            for e in entries
            if not e.name.startswith(".")
            and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
            and e.is_file()
        ),
        key=lambda p: p.name,
    )


def frame_numbers(names: list[str]) -> list[int]:
    """Frame number of each file name (see module doc). Raises on repeated numbers."""
    stems = [Path(n).stem for n in names]
    matches = [_DIGITS.search(s) for s in stems]
    if not all(matches):
        order = sorted(range(len(names)), key=lambda i: names[i])
        pos = [0] * len(names)
        for rank, i in enumerate(order):
            pos[i] = rank
        return pos
    nums = [int(m.group(1)) for m in matches]  # type: ignore[union-attr]
    seen: dict[int, str] = {}
    for n, name in zip(nums, names, strict=True):
        if n in seen:
            raise InputError(f"files {seen[n]!r} and {name!r} have the same frame number {n}")
        seen[n] = name
    return nums


def frame_pattern(names: list[str]) -> str | None:
    """A ``str.format`` pattern that regenerates every name from its number, e.g.
    ``"img_{:05d}.jpg"``, or ``None`` if the names follow no single pattern."""
    shapes = set()
    lengths = set()
    padded = False
    for n in names:
        p = Path(n)
        m = _DIGITS.search(p.stem)
        if not m or "{" in n or "}" in n:
            return None
        digits = m.group(1)
        shapes.add((p.stem[: m.start(1)], p.stem[m.end(1) :] + p.suffix))
        lengths.add(len(digits))
        padded |= len(digits) > 1 and digits.startswith("0")
    if len(shapes) != 1:
        return None
    prefix, suffix = shapes.pop()
    if len(lengths) == 1:
        return f"{prefix}{{:0{lengths.pop()}d}}{suffix}"
    return None if padded else f"{prefix}{{:d}}{suffix}"


@dataclass
class FrameFolder:
    """One video's frame (or mask) files as found on disk."""

    video_id: VideoId
    folder: Path
    files: list[Path]
    frames: list[int]  # frame number of each file, same order as files

    @property
    def pattern(self) -> str | None:
        return frame_pattern([f.name for f in self.files])


def _video_id_for(rel: tuple[str, ...], layout: str, root: Path) -> VideoId:
    if layout == "finediving":
        if len(rel) != 2 or not rel[1].isdigit():
            raise InputError(
                f"{root / Path(*rel)}: the FineDiving layout is ROOT/<video_name>/<clip_idx>/"
                "<frame>.jpg with a numeric clip_idx"
            )
        return normalize_video_id((rel[0], int(rel[1])))
    if len(rel) != 1:
        raise InputError(f"{root / Path(*rel)}: the folder layout is ROOT/<video>/<frame files>")
    return normalize_video_id((rel[0],))


def scan_tree(root: str | os.PathLike, layout: str = "auto") -> list[FrameFolder]:
    """Find every leaf folder of images under ``root`` and name it by ``layout``.

    ``finediving``: ``ROOT/<video_name>/<clip_idx>/<frames>`` -> id ``(video_name, clip_idx)``;
    ``folder``: ``ROOT/<video>/<frames>`` -> id ``(video,)``; ``auto``: finediving when the image
    folders are two levels deep, folder when one. Symlinked folders are followed.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    leaves: list[tuple[tuple[str, ...], list[Path]]] = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        imgs = list_images(d)
        if imgs:
            rel = d.relative_to(root).parts
            if not rel:
                raise InputError(
                    f"{root}: image files lie directly in the root; expected one folder per video"
                )
            leaves.append((rel, imgs))
    if not leaves:
        raise InputError(f"{root}: no image files found (empty tree?)")
    if layout == "auto":
        depths = {len(rel) for rel, _ in leaves}
        if depths == {2}:
            layout = "finediving"
        elif depths == {1}:
            layout = "folder"
        else:
            raise InputError(
                f"{root}: image folders at mixed depths {sorted(depths)}; pass --layout"
            )
    out = []
    for rel, imgs in leaves:
        vid = _video_id_for(rel, layout, root)
        try:
            nums = frame_numbers([p.name for p in imgs])
        except InputError as e:
            raise InputError(f"{root / Path(*rel)}: {e}") from None
        out.append(FrameFolder(vid, root / Path(*rel), imgs, nums))
    return out


class FrameLocator:
    """Finds the frame image of a stored video by its number under a frames root, whatever the
    file's extension and zero padding (``00489.jpg``, ``489.png``, ``img_489.jpeg``).

    The video's folder is the first that exists of: ``ROOT/<frames_dir>`` (the store's attribute,
    relative to the frames root as ``pseudo-mask`` writes it), the same without a leading
    component named like ROOT (``hmtools synth`` writes ``frames/<name>/<clip>`` relative to the
    dataset folder), and ``ROOT/<id parts>`` (``name/clip``, the FineDiving layout)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: frames root is not a folder")
        self._index: dict[Path, dict[int, list[Path]]] = {}

    def folder(self, video_id: VideoId, frames_dir: object = None) -> Path:
        tried = []
        rel = str(frames_dir) if frames_dir else ""
        if rel and not rel.startswith("missing"):
            tried.append(self.root / rel)
            parts = Path(rel).parts
            if len(parts) > 1 and parts[0] == self.root.name:
                tried.append(self.root.joinpath(*parts[1:]))
        tried.append(self.root.joinpath(*[str(p) for p in video_id]))
        for d in tried:
            if d.is_dir():
                return d
        raise InputError(
            f"video {'/'.join(map(str, video_id))}: no frame folder under {self.root} "
            f"(looked for {', '.join(str(d) for d in dict.fromkeys(tried))})"
        )

    def _numbers(self, folder: Path) -> dict[int, list[Path]]:
        idx = self._index.get(folder)
        if idx is None:
            idx = {}
            imgs = list_images(folder)
            if any(_DIGITS.search(p.stem) is None for p in imgs):
                for k, p in enumerate(imgs):  # no digits somewhere: sorted position (module doc)
                    idx[k] = [p]
            else:
                for p in imgs:
                    idx.setdefault(int(_DIGITS.search(p.stem).group(1)), []).append(p)
            self._index[folder] = idx
        return idx

    def frame(self, video_id: VideoId, frame: int, frames_dir: object = None) -> Path:
        """The file of ``frame``; :class:`InputError` when no file or several have that number."""
        folder = self.folder(video_id, frames_dir)
        hits = self._numbers(folder).get(int(frame), [])
        if not hits:
            raise InputError(
                f"video {'/'.join(map(str, video_id))} frame {frame}: no image numbered {frame} "
                f"in {folder}"
            )
        if len(hits) > 1:
            raise InputError(
                f"video {'/'.join(map(str, video_id))} frame {frame}: several images have that "
                f"number in {folder} ({', '.join(p.name for p in hits)})"
            )
        return hits[0]
