"""Dataset commands: synth, dataset-summary."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hmtools.cli import main
from hmtools.datasets.records import DATASETS, DEFAULT_LENGTH, load_dataset
from hmtools.datasets.stats import build_report
from hmtools.datasets.summary import format_dataset_summary, summarize_dataset
from hmtools.datasets.synth import generate


@main.command(short_help="Synthetic diving clips with exact masks and scores.")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--videos", "-n", type=int, required=True, help="Number of annotation keys (clips).")
@click.option(
    "--seed", "-s", type=int, default=0, show_default=True, help="Seed: the same clips again."
)
@click.option("--height", type=int, default=256, show_default=True, help="Frame height (px).")
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option(
    "--test-share",
    type=float,
    default=0.25,
    show_default=True,
    help="Share of each dive number's clips in the test split.",
)
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in OUT.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def synth(
    out: Path,
    videos: int,
    seed: int,
    height: int,
    workers: int | None,
    test_share: float,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write synthetic diving clips in the FineDiving layout: OUT/frames/<video>/<clip>/*.jpg,
    OUT/Annotations/ (the six official pickles, splits included), OUT/Synth-HM.h5 (exact masks
    as the gtm layer) and OUT/synth_factors.csv (hidden execution factors).

    \b
    Example:
      hmtools synth data/synth --videos 200 --seed 0
      hmtools synth data/bench --videos 280 --test-share 0.57   # 120 train / 160 test
    """
    generate(
        out,
        videos,
        seed,
        height=height,
        workers=workers,
        overwrite=overwrite,
        progress=not quiet,
        test_share=test_share,
    )
    click.echo(f"wrote {videos} synthetic clips to {out}")


@main.command("dataset-summary", short_help="Samples, splits, action types, scores, frames.")
@click.option(
    "--dataset", type=click.Choice(DATASETS), required=True, help="Which official format."
)
@click.option(
    "--annotations",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Folder with the official annotation files.",
)
@click.option(
    "--frames-root",
    "--data-root",
    "data_root",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Frame folders: also check which samples have complete frames (--data-root is the "
    "old name).",
)
@click.option(
    "--length",
    type=int,
    default=DEFAULT_LENGTH,
    show_default=True,
    help="Frames per sample (MTL-AQA/AQA-7 windows).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def dataset_summary(
    dataset: str, annotations: Path, data_root: Path | None, length: int, as_json: bool
) -> None:
    """Summarise a dataset's official annotations (and, with --frames-root, its frame folders).

    \b
    Example:
      hmtools dataset-summary --dataset finediving --annotations FineDiving/Annotations \\
          --frames-root FineDiving/FINADiving_MTL_256s
    """
    samples = load_dataset(dataset, annotations, data_root)
    d = summarize_dataset(samples, check_frames=data_root is not None, length=length)
    click.echo(json.dumps(d, indent=2) if as_json else format_dataset_summary(d))


@main.command(short_help="Mask statistics report (tables, plots, pm-vs-gtm IoU).")
@click.argument("store", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for report.md, CSV tables and PNG plots.",
)
@click.option(
    "--annotations",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Official annotation folder: action types from it instead of the store.",
)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="finediving",
    show_default=True,
    help="Format of --annotations.",
)
@click.option(
    "--frames-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Frame folders: adds examples.png (worst-agreeing frames with both contours).",
)
@click.option(
    "--boundary/--no-boundary",
    default=True,
    show_default=True,
    help="Compute the DAVIS boundary F-measure (decodes every mask pair; ~1 ms a frame).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def stats(
    store: Path,
    out: Path,
    annotations: Path | None,
    dataset: str,
    frames_root: Path | None,
    boundary: bool,
    quiet: bool,
) -> None:
    """Masks that label an athlete (non-empty, as the paper's Fig. 4 counts them) per action
    type, group and layer, empty masks apart; coverage of the frames that show an athlete;
    frames without a mask; areas, boxes, origins; and where both layers exist the pm-vs-gtm
    agreement on frames with an athlete (IoU, DAVIS boundary F, J&F, misses, false alarms) per
    video and action type. Writes summary.json, CSV tables, PNG plots and report.md.

    \b
    Example:
      hmtools stats FineDiving-HM.h5 --annotations FineDiving/Annotations --out stats/
      hmtools stats pm-and-gtm.h5 --frames-root FineDiving/frames --out stats/
    """
    rep = build_report(
        store,
        out,
        dataset=dataset,
        annotations=annotations,
        frames_root=frames_root,
        boundary=boundary,
        progress=not quiet,
    )
    click.echo(rep.summary)
    click.echo(
        f"report: {rep.out / 'report.md'} ({len(rep.tables)} tables, {len(rep.plots)} plots)"
    )


@main.command(short_help="Draw pm/gtm contours on frames: worst-frame montages, GIF/MP4.")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--frames-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Frame folders (frames are found by number, any extension).",
)
@click.option(
    "--video",
    "videos",
    multiple=True,
    help="Only this video, as the reports print it (name/clip); repeatable. Default: all.",
)
@click.option(
    "--worst", type=click.IntRange(1, 100), default=6, show_default=True, help="Frames per montage."
)
@click.option("--animate", is_flag=True, help="Also an animation of every frame of each video.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gif", "mp4"]),
    default="gif",
    show_default=True,
    help="Animation format.",
)
@click.option(
    "--fps",
    type=click.FloatRange(0.1, 120),
    default=10.0,
    show_default=True,
    help="Animation frame rate.",
)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Write into an existing non-empty --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def overlay(
    store: Path,
    frames_root: Path,
    videos: tuple[str, ...],
    worst: int,
    animate: bool,
    fmt: str,
    fps: float,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Draw the pm (red) and gtm (green) contours on the frames: OUT/<video>/worst.png, a
    montage of the frames where the two agree worst (false alarms, then athlete frames by
    rising IoU), and with --animate OUT/<video>/overlay.gif (or .mp4) of the whole video.

    \b
    Example:
      hmtools overlay FineDiving-HM.h5 --frames-root FineDiving/frames --out overlays/
      hmtools overlay pm.h5 --frames-root frames/ --video FINADivingWorldCup2021_Men3m_final_r1/0 \\
          --animate --format mp4 --out overlays/
    """
    from hmtools.datasets.overlay import overlay_videos

    rep = overlay_videos(
        store,
        frames_root,
        out,
        videos=list(videos) or None,
        worst=worst,
        animate=animate,
        fmt=fmt,
        fps=fps,
        overwrite=overwrite,
        progress=not quiet,
    )
    click.echo(
        f"{len(rep.montages)} montages, {len(rep.animations)} animations -> {rep.out}"
        + (
            f"; {len(rep.failed)} videos without frames (first: {rep.failed[0][1]})"
            if rep.failed
            else ""
        )
    )
