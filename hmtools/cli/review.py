"""The correction loop's commands: review-queue and propagate (ls-import --propagate too)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hmtools.cli import EXIT_PARTIAL, main
from hmtools.cli.segmenter_options import build_segmenter, segmenter_options

_DATASETS = click.Choice(["folder", "finediving", "mtl-aqa", "aqa7"])


def propagation_options(f):
    """The options ``propagate`` and ``ls-import --propagate`` share."""
    opts = [
        click.option(
            "--dataset",
            type=_DATASETS,
            default="folder",
            show_default=True,
            help="Layout of --frames-root, as for pseudo-mask.",
        ),
        click.option(
            "--annotations",
            type=click.Path(exists=True, path_type=Path),
            default=None,
            help="Annotation folder (for --dataset finediving|mtl-aqa|aqa7).",
        ),
        click.option(
            "--corrected",
            default="gtm",
            show_default=True,
            help="The layer of corrected masks to carry.",
        ),
        click.option(
            "--into",
            default="pm",
            show_default=True,
            help="The layer to write complete (corrected + propagated frames).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return segmenter_options(allow_none=True)(f)


def _report(rep) -> None:
    spf = rep.seconds_per_frame
    click.echo(
        f"{rep.videos_propagated} videos propagated ({rep.propagated_frames} frames"
        + (f", {spf:.3f} s a frame" if rep.propagated_frames else "")
        + f"), {rep.videos_copied} copied unchanged"
        + (f", {rep.videos_skipped} already done" if rep.videos_skipped else "")
        + f" -> {rep.out}"
    )
    if rep.failures:
        click.echo(
            f"{len(rep.failures)} videos failed (listed in "
            f"{rep.out.with_name(rep.out.stem + '.failures.csv')}):",
            err=True,
        )
        for vid, why in rep.failures[:20]:
            click.echo(f"  {vid}: {why}", err=True)
        sys.exit(EXIT_PARTIAL)


@main.command("review-queue", short_help="The frames to correct next (CSV video,frame).")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--budget",
    required=True,
    help="N frames over the whole store (where they gain most), or P% of each video's frames.",
)
@click.option("--layer", default="pm", show_default=True, help="The masks to be corrected.")
@click.option(
    "--corrected",
    default="gtm",
    show_default=True,
    help="Frames already in this layer are never queued again.",
)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Queue CSV.")
def review_queue_cmd(store: Path, budget: str, layer: str, corrected: str, out: Path) -> None:
    """Choose the frames an annotator should correct next so that, once propagated, the whole
    video is as right as possible: where the masks change fast, far from frames already
    corrected, with low confidence (after propagate: where its two directions disagreed).
    Writes CSV video,frame (video as the reports print it: name/clip or the folder name).

    \b
    Example (the loop):
      hmtools pseudo-mask frames/ --out pm.h5
      hmtools review-queue pm.h5 --budget 10% --out queue.csv
      hmtools ls-export pm.h5 --frames-root frames/ --project p --frames queue:queue.csv
      hmtools ls-import pm.h5 --project p --propagate --frames-root frames/
      hmtools review-queue pm.h5 --budget 5% --out queue2.csv   # and again
    """
    from hmtools.annotation.review import review_queue, write_queue

    df = review_queue(store, budget, layer=layer, corrected=corrected)
    write_queue(df, out)
    click.echo(f"{len(df)} frames of {df['video'].nunique()} videos queued -> {out}")


@main.command(short_help="Carry corrected masks to the frames between them.")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--frames-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The frames of the store's videos.",
)
@propagation_options
@click.option(
    "--shard",
    default=None,
    help="k/n (0-based); default from SLURM_ARRAY_TASK_ID/COUNT or RANK/WORLD_SIZE.",
)
@click.option("--resume", is_flag=True, help="Skip videos finished by an earlier run.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option(
    "--max-video-gb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Skip (as a failure) a video needing more memory; default: half the RAM.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Store to write (with --shard k/n: <out>.shard<k>of<n>.h5).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def propagate(
    store: Path,
    frames_root: Path,
    dataset: str,
    annotations: Path | None,
    corrected: str,
    into: str,
    seg: dict,
    shard: str | None,
    resume: bool,
    overwrite: bool,
    max_video_gb: float | None,
    out: Path,
    quiet: bool,
) -> None:
    """In every video with corrected masks (--corrected), carry each correction forward and
    backward to the frames between corrections (dense optical flow, the segmenter re-prompted
    from the carried mask, both directions combined) and write a complete --into layer:
    corrected frames exactly as corrected, the others with origin "propagated" and a score
    (the two directions' agreement). Every other layer is copied to --out unchanged.

    \b
    Example:
      hmtools propagate pm-and-gtm.h5 --frames-root frames/ --out propagated.h5
      hmtools propagate FineDiving-HM.h5 --frames-root FineDiving/frames --dataset finediving \\
          --annotations FineDiving/Annotations --sam-checkpoint sam_vit_b_01ec64.pth \\
          --device cuda --shard 0/8 --out prop.h5
      hmtools propagate pm-and-gtm.h5 --frames-root frames/ \\
          --sam2-checkpoint sam2.1_hiera_base_plus.pt --out propagated.h5
    """
    from hmtools.annotation.propagate import run_propagate

    rep = run_propagate(
        store,
        frames_root,
        out,
        build_segmenter(seg),
        dataset=dataset,
        annotations=annotations,
        corrected=corrected,
        into=into,
        shard=shard,
        resume=resume,
        overwrite=overwrite,
        progress=not quiet,
        max_video_bytes=max_video_gb * 2**30 if max_video_gb is not None else None,
    )
    _report(rep)
