"""The segmenter options ``pseudo-mask``, ``propagate`` and ``ls-import --propagate`` share, and
the one function that turns them into a segmenter."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import click

from hmtools.annotation.segmenters import SEGMENTERS

_KEYS = ("segmenter", "sam_checkpoint", "sam_model", "sam2_checkpoint", "sam2_config", "device")


def segmenter_options(*, allow_none: bool = False) -> Callable:
    """Click options for the segmenter, collected into one ``seg`` dict argument of the
    command (``allow_none``: ``--segmenter none`` means flow alone, for propagation)."""
    choices = [*SEGMENTERS, *(["none"] if allow_none else [])]
    opts = [
        click.option(
            "--segmenter",
            type=click.Choice(choices),
            default=None,
            help="Default: sam2 with --sam2-checkpoint, sam with --sam-checkpoint, else "
            "blazepose when its model is installed (hmtools install-models), else flow-grabcut."
            + (" none: optical flow alone." if allow_none else ""),
        ),
        click.option(
            "--sam-checkpoint",
            type=click.Path(path_type=Path),
            default=None,
            help="Local SAM checkpoint (sam_vit_b/l/h .pth; never downloaded).",
        ),
        click.option(
            "--sam-model",
            type=click.Choice(["vit_b", "vit_l", "vit_h"]),
            default="vit_b",
            show_default=True,
            help="SAM's size (matches --sam-checkpoint).",
        ),
        click.option(
            "--sam2-checkpoint",
            type=click.Path(path_type=Path),
            default=None,
            help="Local SAM 2 checkpoint (e.g. sam2.1_hiera_base_plus.pt; never downloaded; "
            "needs the [sam2] extra).",
        ),
        click.option(
            "--sam2-config",
            default=None,
            help="SAM 2 config: tiny, small, base_plus, large, a name in the sam2 package "
            "(configs/sam2.1/sam2.1_hiera_t.yaml) or a YAML file. Default: the one of an "
            "official checkpoint's file name.",
        ),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto (a GPU when one is visible), cpu, cuda or cuda:N, for SAM and SAM 2; "
            "under torchrun cuda means cuda:LOCAL_RANK.",
        ),
    ]

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def inner(*a: object, **kw: object) -> object:
            return f(*a, seg={k: kw.pop(k) for k in _KEYS}, **kw)

        for o in reversed(opts):
            inner = o(inner)
        return inner

    return deco


def build_segmenter(
    seg: dict, batch_size: int = 4, frames: Callable[[], int] | None = None
) -> object:
    """The segmenter of the ``seg`` options (``None`` for ``--segmenter none``). Says which it
    is on stderr, with the estimated time when SAM or SAM 2 would run on the CPU (``frames``:
    counts the job's frames, called only for that estimate)."""
    from hmtools.annotation.pseudo_mask import SAM_CPU_SECONDS
    from hmtools.annotation.segmenters import default_segmenter, make_segmenter
    from hmtools.devices import resolve_device

    name = seg["segmenter"] or default_segmenter(seg["sam_checkpoint"], seg["sam2_checkpoint"])
    if name == "none":
        click.echo("segmenter: none (optical flow alone)", err=True)
        return None
    if name not in ("sam", "sam2"):
        click.echo(f"segmenter: {name} (weight-free; pass --sam2-checkpoint for SAM 2)", err=True)
    elif resolve_device(seg["device"]).type == "cpu":
        if name == "sam":
            per = SAM_CPU_SECONDS[seg["sam_model"]]
            n = frames() if frames else 0
            est = f", ~{n * per / 3600:.1f} h for {n} frames" if n else ""
            click.echo(
                f"SAM {seg['sam_model']} on the CPU: ~{per:.0f} s per 720p frame{est} -- "
                "SAM is a GPU job (--device cuda)",
                err=True,
            )
        else:
            click.echo(
                "SAM 2 on the CPU: its image encoder runs at 1024 px on every frame (seconds a "
                "frame for the large models) -- SAM 2 is a GPU job (--device cuda)",
                err=True,
            )
    return make_segmenter(
        name,
        sam_checkpoint=str(seg["sam_checkpoint"]) if seg["sam_checkpoint"] else None,
        sam_model=seg["sam_model"],
        sam2_checkpoint=str(seg["sam2_checkpoint"]) if seg["sam2_checkpoint"] else None,
        sam2_config=seg["sam2_config"],
        device=seg["device"],
        batch_size=batch_size,
    )
