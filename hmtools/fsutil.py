"""Writing files and folders so that nothing already written is lost or half-replaced.

Every writer in hmtools goes through here:

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: a temporary file in the target's folder,
  fsynced, renamed over the target (a crash leaves the old file or the new one, never a mix).
- :func:`publish`: the permission bits a temporary file gets before it is renamed into place.
  ``tempfile.mkstemp`` creates files with mode 0600 whatever the umask; a shared dataset must be
  readable as ``open()`` would have made it: an existing target keeps its mode, a new one gets
  ``0666 & ~umask``.
- :func:`staged_dir`: a folder of outputs (an unpacked PNG tree, a report) is written into a
  hidden staging folder next to the target and moved into place only when all of it is done, so
  a failure half-way writes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hmtools.errors import InputError


def current_umask() -> int:
    """The process umask (read from ``/proc`` where it is exposed, else set-and-restore)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give ``tmp`` the mode ``target`` should have (its own if it exists, else ``0666 & ~umask``)
    and rename it over ``target``."""
    target = Path(target)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _dir_mode() -> int:
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder for everything that belongs in ``out``; on success move it there.

    ``out`` must not exist, be empty, or (with ``overwrite``) be a folder whose files the staged
    ones replace one by one (files of ``out`` that the staging folder does not have are kept).
    On an exception nothing in ``out`` changes and the staging folder is removed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} exists and is not empty: pass --overwrite to write into it")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield stage
        os.chmod(stage, _dir_mode())
        if not out.exists():
            os.replace(stage, out)
            return
        if not any(out.iterdir()):
            out.rmdir()
            os.replace(stage, out)
            return
        for src in sorted(stage.rglob("*")):
            dst = out / src.relative_to(stage)
            if src.is_dir():
                dst.mkdir(exist_ok=True)
            else:
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
