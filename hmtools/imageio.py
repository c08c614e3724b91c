"""Reading image files strictly: a damaged JPEG is an error, not a silently wrong picture.

OpenCV decodes a JPEG with 40 scrambled bytes, or one cut in half, into an image (the rest
grey or garbage) and lets libjpeg print a warning -- "Corrupt JPEG data: ...", "Premature end
of JPEG file" -- to the process's stderr (file descriptor 2), with no way to ask for it from
Python. :func:`read_image` decodes JPEGs with fd 2 pointed at a scratch file for the length of
the call (one decode at a time, under a lock), and raises :class:`InputError` naming the file
when libjpeg complained. Anything else written to fd 2 meanwhile (another thread's log line) is
passed on unchanged. PNG and other formats are decoded as they are: their decoders fail instead
of warning.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from hmtools.errors import InputError

#: libjpeg's warning texts (jerror.h) that mean the picture is not what was stored.
_JPEG_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Invalid SOS parameters",
    "Warning: unknown JFIF revision",
    "Inconsistent progression sequence",
    "Huffman table",
    "Bogus",
    "JPEG datastream contains no image",
)
_lock = threading.Lock()
_scratch = None


def _is_jpeg(buf: np.ndarray) -> bool:
    return buf.size >= 2 and buf[0] == 0xFF and buf[1] == 0xD8


def _decode_watching_stderr(buf: np.ndarray, flags: int) -> tuple[np.ndarray | None, str]:
    global _scratch
    with _lock:
        if _scratch is None:
            _scratch = tempfile.TemporaryFile()  # noqa: SIM115 (lives with the process)
        _scratch.seek(0)
        _scratch.truncate()
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(_scratch.fileno(), 2)
            img = cv2.imdecode(buf, flags)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        _scratch.seek(0)
        text = _scratch.read().decode("utf-8", "replace")
    return img, text


def decode_image(buf: np.ndarray, flags: int, where: str | os.PathLike) -> np.ndarray:
    """``cv2.imdecode(buf, flags)``; :class:`InputError` naming ``where`` when the bytes are
    not an image, or are a JPEG that libjpeg reports damaged."""
    if buf.size == 0:
        raise InputError(f"{where}: empty file")
    if not _is_jpeg(buf):
        img = cv2.imdecode(buf, flags)
        if img is None:
            raise InputError(f"{where}: not an image OpenCV can decode")
        return img
    img, text = _decode_watching_stderr(buf, flags)
    damage = [ln.strip() for ln in text.splitlines() if any(w in ln for w in _JPEG_WARNINGS)]
    rest = "".join(ln + "\n" for ln in text.splitlines() if ln.strip() and ln.strip() not in damage)
    if rest:
        sys.stderr.write(rest)
    if damage:
        raise InputError(f"{where}: damaged JPEG ({'; '.join(damage)})")
    if img is None:
        raise InputError(f"{where}: not an image OpenCV can decode")
    return img


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Read an image file strictly (see module doc); :class:`InputError` names the file."""
    path = Path(path)
    try:
        buf = np.fromfile(path, np.uint8)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(buf, flags, path)
