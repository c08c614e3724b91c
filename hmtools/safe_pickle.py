"""A restricted unpickler for dataset annotation files.

The official FineDiving and MTL-AQA annotations are pickles. ``pickle.load`` on a downloaded file
can run arbitrary code, so hmtools loads them with an unpickler that resolves only builtin
containers/scalars and the numpy reconstruction helpers (under both ``numpy.core`` -- what the
real files use -- and ``numpy._core`` -- what numpy 2 writes), plus ``_codecs.encode``, with
which protocol-2 pickles carry byte strings. Anything else raises
:class:`~hmtools.errors.InputError` naming the file and the refused global.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
from pathlib import Path

import numpy as np

from hmtools.errors import InputError

_BUILTINS = {
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "str",
    "bytes",
    "bytearray",
    "int",
    "float",
    "complex",
    "bool",
    "slice",
    "range",
    "object",
}


def _numpy_globals() -> dict[tuple[str, str], object]:
    import _codecs

    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer

    out: dict[tuple[str, str], object] = {
        ("_codecs", "encode"): _codecs.encode,  # how protocol-2 pickles carry bytes
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        out[(f"{core}.multiarray", "scalar")] = scalar
        out[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return out


_NUMPY = _numpy_globals()


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if (module, name) in _NUMPY:
            return _NUMPY[(module, name)]
        raise _Refused(f"global {module}.{name} is not allowed")


def load_pickle(path: str | os.PathLike) -> object:
    """Load an annotation pickle with the restricted unpickler (see module doc)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return _Restricted(io.BytesIO(data), encoding="latin1").load()
    except _Refused as e:
        raise InputError(
            f"{path}: refused to unpickle: {e} (only builtins and numpy are "
            "allowed in annotation files)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        ImportError,
        KeyError,
    ) as e:
        raise InputError(f"{path}: not a readable annotation pickle ({e})") from None
