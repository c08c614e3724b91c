"""The -HM HDF5 schema (version 1): names, constants and the video-key codec.

This module is the single place that defines the on-disk contract described in the README
("The -HM HDF5 schema"). Layout::

    /                         attrs: schema="hmtools-hm", schema_version=1, name, created
    /videos/<video_key>/      attrs: video_id (JSON list), height, width, num_frames,
                                     action_type, [frames_dir | video_path], [frame_pattern]
    /videos/<video_key>/<layer>/
        frame_index int32 [n]     sorted unique frame numbers
        rle_offsets int64 [n+1]   mask i = rle_bytes[rle_offsets[i]:rle_offsets[i+1]]
        rle_bytes   uint8 [total] concatenated COCO compressed RLE ``counts``
        area        int32 [n]     foreground pixels
        bbox        float32 [n,4] x, y, w, h (COCO); zeros for empty masks
        score       float32 [n]   confidence (pm); NaN where not applicable
        origin      uint8 [n]     see :data:`ORIGINS`
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote, unquote

from hmtools.errors import SchemaError

SCHEMA_NAME = "hmtools-hm"
SCHEMA_VERSION = 1
VIDEOS_GROUP = "videos"

#: Per-layer datasets and their dtypes, in the order validation reports them.
LAYER_DATASETS: dict[str, str] = {
    "frame_index": "int32",
    "rle_offsets": "int64",
    "rle_bytes": "uint8",
    "area": "int32",
    "bbox": "float32",
    "score": "float32",
    "origin": "uint8",
}

#: Well-known layer names. Other names are allowed (e.g. ``"pm-sam2"``).
LAYER_PM = "pm"
LAYER_GTM = "gtm"

#: ``origin`` codes.
ORIGIN_PSEUDO = 0
ORIGIN_CORRECTED = 1
ORIGIN_ACCEPTED = 2
ORIGIN_GROUND_TRUTH = 3
#: carried by ``hmtools propagate`` from corrected frames (its score: how far the two
#: directions agree); added in hmtools 0.2 without a schema version change: readers that do not
#: know the code only lose its name, and files written before stay valid.
ORIGIN_PROPAGATED = 4
ORIGINS: dict[int, str] = {
    ORIGIN_PSEUDO: "pseudo",
    ORIGIN_CORRECTED: "corrected",
    ORIGIN_ACCEPTED: "accepted",
    ORIGIN_GROUND_TRUTH: "ground_truth",
    ORIGIN_PROPAGATED: "propagated",
}

#: A video id: the dataset's own sample key as a tuple of str/int components, e.g.
#: FineDiving ``("FINADivingWorldCup2021_Men3m_final_r1", 0)``, MTL-AQA ``(1, 1)``,
#: AQA-7 ``("diving", 12)``, a plain folder ``("<folder name>",)``.
VideoId = tuple[str | int, ...]

_KEY_SEP = "|"
_INT_MARK = "#"


def normalize_video_id(video_id: Sequence[str | int] | str | int) -> VideoId:
    """Return ``video_id`` as a tuple of str/int components (a bare str/int becomes a 1-tuple).

    numpy integers are accepted and converted; bools, floats and empty strings are refused.
    """
    if isinstance(video_id, (str, int)) and not isinstance(video_id, bool):
        video_id = (video_id,)
    try:
        parts = list(video_id)
    except TypeError:
        raise SchemaError(f"video id {video_id!r} is not a str, int or sequence of them") from None
    if not parts:
        raise SchemaError("video id is empty")
    out: list[str | int] = []
    for p in parts:
        if isinstance(p, bool):
            raise SchemaError(f"video id {video_id!r}: component {p!r} is a bool")
        if isinstance(p, str):
            if p == "":
                raise SchemaError(f"video id {video_id!r}: empty string component")
            out.append(p)
        elif hasattr(p, "__index__"):  # int and numpy integers
            out.append(int(p.__index__()))
        else:
            raise SchemaError(
                f"video id {video_id!r}: component {p!r} is {type(p).__name__}, not str or int"
            )
    return tuple(out)


def video_key(video_id: Sequence[str | int] | str | int) -> str:
    """Reversible HDF5-safe group name for a video id.

    str components are percent-encoded (so ``/`` and ``|`` cannot occur), int components are
    written ``#<n>``, components are joined with ``|``: ``("FINA_r1", 0)`` -> ``"FINA_r1|#0"``,
    ``(1, 1)`` -> ``"#1|#1"``. :func:`video_id_from_key` inverts it.
    """
    parts = []
    for p in normalize_video_id(video_id):
        if isinstance(p, int):
            parts.append(f"{_INT_MARK}{p}")
        else:
            enc = quote(p, safe="")
            if set(enc) == {"."}:  # "." and ".." are not usable as HDF5 link names
                enc = enc.replace(".", "%2E")
            parts.append(enc)
    return _KEY_SEP.join(parts)


def video_id_from_key(key: str) -> VideoId:
    """Inverse of :func:`video_key`."""
    out: list[str | int] = []
    for part in key.split(_KEY_SEP):
        if part.startswith(_INT_MARK):
            try:
                out.append(int(part[1:]))
            except ValueError:
                raise SchemaError(f"video key {key!r}: bad integer component {part!r}") from None
        else:
            out.append(unquote(part))
    return normalize_video_id(out)


def video_id_to_json(video_id: Sequence[str | int] | str | int) -> str:
    """The ``video_id`` attribute text: a compact JSON list, e.g. ``["FINA_r1",0]``."""
    return json.dumps(list(normalize_video_id(video_id)), separators=(",", ":"))


def video_id_from_json(text: str | bytes) -> VideoId:
    """Parse the ``video_id`` attribute text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"video_id attribute {text!r} is not JSON: {e}") from None
    if not isinstance(value, list):
        raise SchemaError(f"video_id attribute {text!r} is not a JSON list")
    return normalize_video_id(value)


def format_video_id(video_id: Sequence[str | int]) -> str:
    """Human-readable form for messages: ``FINA_r1/0``."""
    return "/".join(str(p) for p in video_id)


def parse_video_id_arg(text: str) -> VideoId:
    """Parse a video id given on the command line: JSON list text, or ``a/b`` path form.

    In the path form, components made of digits become ints (FineDiving ``name/3``).
    """
    text = text.strip()
    if text.startswith("["):
        return video_id_from_json(text)
    parts: list[str | int] = []
    for p in text.split("/"):
        parts.append(int(p) if p.isdigit() else p)
    return normalize_video_id(parts)
