"""The -HM mask store: binary human masks as COCO RLE in one HDF5 file per dataset.

Data structure. A mask is one frame's binary foreground (the union of all athletes), encoded as
COCO *compressed RLE*: the column-major (Fortran order) pixel sequence is cut into alternating
runs of 0s and 1s (starting with 0s) and the run lengths are written as an LEB128-like ASCII
string -- the ``counts`` that :func:`pycocotools.mask.encode` returns. RLE size grows with the
number of boundary pixels, O(sqrt(H*W)) for a compact shape, not with the area: a 455x256 diver
mask takes about 0.5-1.5 KB against 3-4 KB as PNG and ~18 KB as the official JPEG. In the store,
each video's layer keeps all its ``counts`` concatenated in one chunked, gzip-compressed
``uint8`` array with an ``int64`` offset table (HDF5 filters cannot compress variable-length
data); gzip saves another ~1.7x. Per-frame ``area``, ``bbox``, ``score`` and ``origin`` sit in
parallel arrays so statistics never decode a mask. Any COCO tool can read the counts directly.

Cost. Decoding is O(H*W) per mask (pycocotools C code, ~0.1 ms at 455x256); area, bbox, IoU and
union work on the RLEs without decoding (:mod:`hmtools.masks.rle`). Reading frames [a, b) of
one video reads only that video's offsets and the bytes between them.

API (``from hmtools.masks import ...``):
    MaskStore(path)                  read-only store: videos(), info(id), read_masks(id, layer,
                                     start, stop) -> (frame_index, uint8 [T,H,W]), read_layer,
                                     iter_layer(layer), layer_names()
    StoreWriter(path, mode=...)      atomic writer (temp file + rename): add_video, write_layer
    LayerData                        one video/layer: frame_index, rles, area, bbox, score,
                                     origin; from_masks(frames, masks), decode(h, w)
    pack_folder(root, out, ...)      mask folder tree (JPEG/PNG) -> store layer
    pack_coco(json, out, ...)        COCO JSON (RLE/polygons) -> store layer
    unpack_png(h5, dir, ...)         store layer -> PNG tree (bit-exact for PNG input)
    unpack_coco(h5, json, ...)       store layer -> COCO JSON
    validate_store(path)             list of schema problems (empty = valid)
    merge_stores(shards, out)        combine shard stores; refuses conflicting masks
    summarize_store(path)            counts, frames with both layers, bytes per mask
    video_key(id) / video_id_from_key(key)   reversible HDF5 name of a dataset sample id
    rle.encode / decode / area / bbox / iou / union   helpers over pycocotools.mask
    agreement.layer_agreement(path) / summarize(rows)   pm vs gtm per frame: IoU, DAVIS
                                     boundary F, misses, false alarms (what `stats` reports)
    FrameLocator(frames_root)        a stored video's frame file by number, any extension
"""

from hmtools.masks import rle
from hmtools.masks.frames import FrameLocator
from hmtools.masks.io import (
    DEFAULT_THRESHOLD,
    PackReport,
    pack_coco,
    pack_folder,
    read_mask_image,
    to_coco,
    unpack_coco,
    unpack_png,
)
from hmtools.masks.merge import (
    StoreSummary,
    format_summary,
    merge_stores,
    summarize_store,
)
from hmtools.masks.schema import (
    LAYER_GTM,
    LAYER_PM,
    ORIGIN_ACCEPTED,
    ORIGIN_CORRECTED,
    ORIGIN_GROUND_TRUTH,
    ORIGIN_PROPAGATED,
    ORIGIN_PSEUDO,
    ORIGINS,
    SCHEMA_VERSION,
    VideoId,
    format_video_id,
    normalize_video_id,
    parse_video_id_arg,
    video_id_from_key,
    video_key,
)
from hmtools.masks.store import LayerData, MaskStore, StoreWriter, VideoInfo
from hmtools.masks.validate import validate_store

__all__ = [
    "DEFAULT_THRESHOLD",
    "LAYER_GTM",
    "LAYER_PM",
    "ORIGINS",
    "ORIGIN_ACCEPTED",
    "ORIGIN_CORRECTED",
    "ORIGIN_GROUND_TRUTH",
    "ORIGIN_PROPAGATED",
    "ORIGIN_PSEUDO",
    "SCHEMA_VERSION",
    "LayerData",
    "MaskStore",
    "PackReport",
    "StoreSummary",
    "StoreWriter",
    "VideoId",
    "VideoInfo",
    "format_summary",
    "format_video_id",
    "merge_stores",
    "normalize_video_id",
    "pack_coco",
    "pack_folder",
    "parse_video_id_arg",
    "read_mask_image",
    "rle",
    "FrameLocator",
    "summarize_store",
    "to_coco",
    "unpack_coco",
    "unpack_png",
    "validate_store",
    "video_id_from_key",
    "video_key",
]
