"""Which torch device a process uses, the same way for every command (``train``, ``eval``,
``pseudo-mask``): ``auto`` is a GPU when one is visible, else the CPU; under ``torchrun``
(``LOCAL_RANK`` set) ``cuda`` means ``cuda:<LOCAL_RANK>``, one GPU per rank of a node; an
explicit ``cuda:N`` and ``cpu`` are kept as given. A Slurm array task with ``--gres=gpu:1`` sees
its one GPU as ``cuda``. Devices that are not there are a clear :class:`InputError` up front, not
a CUDA error in the middle of a job. torch is imported only when a device is checked."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hmtools.errors import InputError

if TYPE_CHECKING:
    import torch


def rank_device(device: str) -> str:
    """``device`` for this process: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        try:
            return f"cuda:{int(os.environ['LOCAL_RANK'])}"
        except ValueError:
            raise InputError(f"LOCAL_RANK={os.environ['LOCAL_RANK']!r}: not a number") from None
    return device


def check_device(device: str) -> torch.device:
    """``torch.device(device)``, or a clear error when it is not usable here."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r}: not a device (cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InputError(f"--device {device}: no CUDA GPU is visible to this process")
        if dev.index is not None and dev.index >= n:
            raise InputError(
                f"--device {device}: this process sees {n} GPU(s) (cuda:0..cuda:{n - 1}); "
                "under torchrun use --nproc-per-node <= the number of GPUs"
            )
    elif dev.type != "cpu":
        raise InputError(f"--device {device!r}: use cpu, cuda or cuda:N")
    return dev


def resolve_device(spec: str) -> torch.device:
    """The checked device of this process for ``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``;
    see module doc)."""
    if spec == "auto":
        import torch

        spec = "cuda" if torch.cuda.is_available() else "cpu"
    return check_device(rank_device(spec))
