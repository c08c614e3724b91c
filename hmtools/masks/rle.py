"""Thin helpers over :mod:`pycocotools.mask` for binary masks stored as COCO compressed RLE.

pycocotools does every encode/decode here; these helpers only fix the conventions of the store:
masks are ``uint8`` 0/1 arrays ``[T, H, W]`` (C order for the caller, Fortran order at the
pycocotools boundary), an RLE is kept as its ``counts`` bytes plus the video's (H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from hmtools.errors import InputError


def encode(masks: np.ndarray) -> list[bytes]:
    """Encode binary masks ``[T, H, W]`` (or one ``[H, W]``) to COCO RLE ``counts`` bytes.

    Any nonzero value is foreground.
    """
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"masks must be [T,H,W] or [H,W], got shape {m.shape}")
    if m.shape[0] == 0:
        return []
    t, h, w = m.shape
    if m.dtype == bool:
        m = m.view(np.uint8)
    elif m.dtype != np.uint8:
        m = (m != 0).view(np.uint8)
    # pycocotools wants 0/1 in Fortran order [H, W, T]: each mask is transposed into place with
    # OpenCV and thresholded there (at 720p ~7x faster than numpy's strided copy of the whole
    # array after a compare; the same bytes)
    fortran = np.empty((h, w, t), np.uint8, order="F")
    for i in range(t):
        dst = fortran[:, :, i].T  # C-contiguous [W, H]
        cv2.transpose(np.ascontiguousarray(m[i]), dst=dst)
        cv2.threshold(dst, 0, 1, cv2.THRESH_BINARY, dst=dst)
    return [r["counts"] for r in mask_utils.encode(fortran)]


def _rle_objs(counts: Sequence[bytes], height: int, width: int) -> list[dict]:
    size = [int(height), int(width)]
    return [{"size": size, "counts": bytes(c)} for c in counts]


def decode(counts: Sequence[bytes], height: int, width: int) -> np.ndarray:
    """Decode RLE ``counts`` to a C-contiguous ``uint8`` array ``[T, H, W]`` of 0/1.

    pycocotools decodes column-major; each mask is transposed into place with OpenCV (about 3x
    faster than numpy's strided copy of the whole H x W x T array).
    """
    out = np.empty((len(counts), height, width), np.uint8)
    size = [int(height), int(width)]
    for i, c in enumerate(counts):
        m = mask_utils.decode({"size": size, "counts": bytes(c)})  # H x W, Fortran order
        cv2.transpose(m.T, dst=out[i])
    return out


#: pycocotools (2.0.11 and earlier) sizes the array of ``mask.area`` with
#: ``np.array((n,), dtype=np.uint8)``, which NumPy 2 refuses for n > 255 ("Python integer 256 out
#: of bounds for uint8"): every call into it takes at most this many RLEs.
PYCOCOTOOLS_MAX_BATCH = 255


def area(counts: Sequence[bytes], height: int, width: int) -> np.ndarray:
    """Foreground pixel counts, computed on the RLE without decoding (any number of masks)."""
    objs = _rle_objs(counts, height, width)
    out = np.zeros(len(objs), np.int64)
    for i in range(0, len(objs), PYCOCOTOOLS_MAX_BATCH):
        out[i : i + PYCOCOTOOLS_MAX_BATCH] = mask_utils.area(objs[i : i + PYCOCOTOOLS_MAX_BATCH])
    return out


def bbox(counts: Sequence[bytes], height: int, width: int) -> np.ndarray:
    """COCO boxes ``[T, 4]`` (x, y, w, h), zeros for empty masks, without decoding."""
    if len(counts) == 0:
        return np.zeros((0, 4), np.float32)
    return np.asarray(mask_utils.toBbox(_rle_objs(counts, height, width)), np.float32).reshape(
        -1, 4
    )


def iou(a: Sequence[bytes], b: Sequence[bytes], height: int, width: int) -> np.ndarray:
    """Element-wise IoU of two equally long RLE lists, on the RLEs (no decoding).

    Two empty masks have IoU 1 (they agree perfectly).
    """
    if len(a) != len(b):
        raise ValueError("iou needs two lists of equal length")
    out = np.empty(len(a), np.float64)
    ra, rb = _rle_objs(a, height, width), _rle_objs(b, height, width)
    areas_a, areas_b = area(a, height, width), area(b, height, width)
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        if areas_a[i] == 0 and areas_b[i] == 0:
            out[i] = 1.0
        else:
            out[i] = float(mask_utils.iou([x], [y], [0])[0, 0])
    return out


def union(counts: Sequence[bytes], height: int, width: int) -> bytes:
    """Union of several RLEs of one frame, on the RLEs (``pycocotools.mask.merge``)."""
    if len(counts) == 0:
        return encode(np.zeros((height, width), np.uint8))[0]
    if len(counts) == 1:
        return bytes(counts[0])
    return mask_utils.merge(_rle_objs(counts, height, width), intersect=False)["counts"]


def check_counts(counts: bytes, height: int, width: int) -> None:
    """Raise :class:`InputError` unless ``counts`` is a well-formed RLE of an H x W mask.

    A well-formed RLE decodes to exactly H*W pixels and is in the canonical form that
    ``pycocotools.mask.encode`` writes (so decoding and re-encoding reproduces the bytes).
    pycocotools raises on an RLE that is too long but decodes one that is too short into
    uninitialised memory; the round trip catches both.
    """
    try:
        m = mask_utils.decode({"size": [int(height), int(width)], "counts": bytes(counts)})
    except (ValueError, TypeError) as e:
        raise InputError(f"RLE does not decode to {height}x{width}: {e}") from None
    if m.shape != (height, width):
        raise InputError(f"RLE decodes to {m.shape}, expected {(height, width)}")
    if m.max(initial=0) > 1 or mask_utils.encode(np.asfortranarray(m))["counts"] != bytes(counts):
        raise InputError(f"RLE is malformed: its runs do not add up to {height}x{width} pixels")


def from_coco_segmentation(seg: object, height: int, width: int) -> bytes:
    """Canonical RLE ``counts`` from a COCO ``segmentation``: compressed RLE (str/bytes counts),
    uncompressed RLE (list counts) or polygons (list of lists). Raises :class:`InputError`."""
    if isinstance(seg, dict):
        size = seg.get("size")
        counts = seg.get("counts")
        if size is None or counts is None:
            raise InputError("RLE segmentation needs 'size' and 'counts'")
        if [int(s) for s in size] != [height, width]:
            raise InputError(f"RLE size {list(size)} differs from the image size {[height, width]}")
        if isinstance(counts, list):
            if sum(int(c) for c in counts) != height * width:
                raise InputError(f"uncompressed RLE counts do not sum to {height}x{width}")
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
            return encode(mask_utils.decode(rle))[0]
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        check_counts(counts, height, width)
        return bytes(counts)
    if isinstance(seg, list):
        if not seg:
            return encode(np.zeros((height, width), np.uint8))[0]
        polys = seg if isinstance(seg[0], list) else [seg]
        try:
            rles = mask_utils.frPyObjects(polys, height, width)
        except Exception as e:  # pycocotools raises plain Exception on bad polygons
            raise InputError(f"bad polygon segmentation: {e}") from None
        return mask_utils.merge(rles, intersect=False)["counts"]
    raise InputError(f"unsupported segmentation type {type(seg).__name__}")
