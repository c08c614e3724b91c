"""Annotation commands: pseudo-mask."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hmtools.cli import EXIT_PARTIAL, main
from hmtools.cli.review import _report, propagation_options
from hmtools.cli.segmenter_options import build_segmenter, segmenter_options


@main.command("pseudo-mask", short_help="Pseudo masks (SAM or weight-free + tracker) -> pm layer.")
@click.argument(
    "data_root",
    metavar="FRAMES_ROOT",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="-HM store to write (with --shard k/n: <out>.shard<k>of<n>.h5).",
)
@click.option(
    "--dataset",
    type=click.Choice(["folder", "finediving", "mtl-aqa", "aqa7"]),
    default="folder",
    show_default=True,
    help="folder: ROOT/<video>/<frames> or ROOT/*.mp4; the others: official layouts.",
)
@click.option(
    "--annotations",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Annotation folder (for --dataset finediving|mtl-aqa|aqa7).",
)
@segmenter_options()
@click.option(
    "--tracker",
    type=click.Choice(["flow", "mil", "csrt", "kcf"]),
    default="flow",
    show_default=True,
    help="flow (LK + re-acquisition), mil, or csrt/kcf with opencv-contrib.",
)
@click.option(
    "--prompts",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Boxes around the athlete: JSON {video: [x,y,w,h]} or CSV video,x,y,w,h[,frame] "
    "(frame: the box's frame number, default the first; masks then run both ways from it).",
)
@click.option(
    "--shard",
    default=None,
    help="k/n (0-based); default from SLURM_ARRAY_TASK_ID/COUNT or RANK/WORLD_SIZE.",
)
@click.option("--resume", is_flag=True, help="Skip videos finished by an earlier run.")
@click.option("--overwrite", is_flag=True, help="Redo everything into an existing --out.")
@click.option(
    "--batch-size",
    type=int,
    default=4,
    show_default=True,
    help="Frames per SAM image-encoder batch.",
)
@click.option(
    "--low-score",
    type=float,
    default=0.7,
    show_default=True,
    help="Frames scoring below go to <out>.low_confidence.csv.",
)
@click.option(
    "--max-video-gb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Skip (as a failure) a video needing more memory than this; default: half the RAM.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def pseudo_mask(
    data_root: Path,
    out: Path,
    dataset: str,
    annotations: Path | None,
    seg: dict,
    tracker: str,
    prompts: Path | None,
    shard: str | None,
    resume: bool,
    overwrite: bool,
    batch_size: int,
    low_score: float,
    max_video_gb: float | None,
    quiet: bool,
) -> None:
    """Segment the athlete in every frame of every video: a tracker follows the athlete from a
    first-frame box (prompts file or automatic finder) and prompts the segmenter; the result is
    the pm layer of --out, with per-frame scores, a failures list and a low-confidence list.

    \b
    Examples:
      hmtools pseudo-mask data/synth/frames --dataset finediving \\
          --annotations data/synth/Annotations --out pm.h5
      hmtools pseudo-mask FineDiving/frames --dataset finediving --annotations A/ \\
          --sam-checkpoint sam_vit_b_01ec64.pth --device cuda --shard 0/8 --out pm.h5
      hmtools pseudo-mask videos/ --sam2-checkpoint sam2.1_hiera_base_plus.pt --out pm.h5
      # Slurm: sbatch --array=0-7 --wrap "hmtools pseudo-mask ... --out pm.h5" (shards from
      # SLURM_ARRAY_TASK_ID), then: hmtools merge pm.shard*of8.h5 --out FineDiving-HM.h5
      # one node, 4 GPUs (shard = RANK, GPU = LOCAL_RANK):
      torchrun --nproc-per-node 4 -m hmtools.cli pseudo-mask ... --device cuda --out pm.h5
    """
    from hmtools.annotation.pseudo_mask import list_videos, run_pseudo_mask

    def count_frames() -> int:  # only for SAM's CPU estimate: listing a dataset costs time
        return sum(len(j.frames) for j in list_videos(data_root, dataset, annotations))

    seg_ = build_segmenter(seg, batch_size, count_frames)
    rep = run_pseudo_mask(
        data_root,
        out,
        seg_,
        dataset=dataset,
        annotations=annotations,
        tracker=tracker,
        prompts=prompts,
        shard=shard,
        resume=resume,
        overwrite=overwrite,
        low_score=low_score,
        progress=not quiet,
        max_video_bytes=max_video_gb * 2**30 if max_video_gb is not None else None,
    )
    fps = rep.frames / rep.seconds if rep.seconds else 0.0
    click.echo(
        f"{rep.videos_done} videos ({rep.frames} frames, {fps:.1f} frames/s) -> {rep.out}"
        + (f"; {rep.videos_skipped} already done" if rep.videos_skipped else "")
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


@main.command("install-models", short_help="Copy the BlazePose model out of the mediapipe wheel.")
@click.option(
    "--wheel",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A local mediapipe-0.10.21 wheel (default: pip downloads it).",
)
def install_models(wheel: Path | None) -> None:
    """Install the weight-free person segmenter's model (MediaPipe BlazePose, shipped inside the
    PyPI wheel mediapipe==0.10.21) into <prefix>/share/hmtools/models or $HMTOOLS_MODELS.
    Nothing else of mediapipe is installed.

    \b
    Example:
      hmtools install-models
    """
    from hmtools.annotation.blazepose import install_model

    click.echo(f"installed {install_model(wheel)}")


_LS_URL = click.option(
    "--url", envvar="LABEL_STUDIO_URL", show_envvar=True, default=None, help="Label Studio URL."
)
_LS_KEY = click.option(
    "--api-key",
    envvar="LABEL_STUDIO_API_KEY",
    show_envvar=True,
    default=None,
    help="API token; never printed. Prefer the variable: a token on the command line is "
    "visible to every user of the machine (ps, shell history).",
)


@main.command("ls-export", short_help="Send pseudo masks to Label Studio as pre-annotations.")
@click.argument("store", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--frames-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The frames the store's videos come from.",
)
@click.option(
    "--project",
    required=True,
    help="Project title (created if missing; a set NAME, NAME #2, ... when it outgrows "
    "--max-tasks-per-project) or id.",
)
@click.option("--layer", default="pm", show_default=True, help="The layer to pre-annotate with.")
@_LS_URL
@_LS_KEY
@click.option(
    "--frames",
    "frames",
    default="all",
    show_default=True,
    help="all, low-score (score < 0.7), every:K (frame numbers divisible by K) or queue:FILE "
    "(exactly the frames of a review-queue CSV).",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many (lowest scores).",
)
@click.option(
    "--max-tasks-per-project",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Split the set over projects by whole videos past this many tasks (Label Studio's "
    "maintainers advise <= 100k a project; its default cap is 250k).",
)
@click.option(
    "--serve",
    type=click.Choice(["local-files", "upload"]),
    default="local-files",
    show_default=True,
    help="local-files: the server reads --frames-root (same machine or mount); "
    "upload: each frame travels inside its task (any remote server; the server's database "
    "holds the frames).",
)
@click.option(
    "--document-root",
    type=click.Path(path_type=Path),
    default=None,
    help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that "
    "environment variable, else --frames-root).",
)
def ls_export_cmd(
    store: Path,
    frames_root: Path,
    project: str,
    layer: str,
    url: str | None,
    api_key: str | None,
    frames: str,
    max_tasks: int | None,
    max_tasks_per_project: int,
    serve: str,
    document_root: Path | None,
) -> None:
    """One task per frame (lowest pseudo-mask confidence first) with the frame image and the
    pseudo mask as a brush prediction; rerunning adds no duplicate task.

    \b
    Example:
      export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=...
      hmtools ls-export FineDiving-HM.h5 --frames-root FineDiving/frames --project fd-pm \\
          --frames low-score --max-tasks 500
    """
    from hmtools.annotation.labelstudio import ls_export

    rep = ls_export(
        store,
        frames_root,
        project,
        layer=layer,
        url=url,
        api_key=api_key,
        frames=frames,
        max_tasks=max_tasks,
        document_root=document_root,
        serve=serve,
        max_tasks_per_project=max_tasks_per_project,
    )
    click.echo(
        f"{rep.created} tasks created, {rep.existing} already there ({rep.selected} frames "
        f"selected) in {len(rep.projects)} project(s):"
    )
    for pid, (title, new, total) in rep.projects.items():
        click.echo(f"  project {pid} {title!r}: {new} new, {total} tasks")


@main.command("ls-import", short_help="Bring corrected masks back into the gtm layer.")
@click.argument("store", type=click.Path(exists=True, path_type=Path))
@click.option("--project", required=True, help="Project title or id.")
@_LS_URL
@_LS_KEY
@click.option(
    "--policy",
    type=click.Choice(["latest", "ground-truth"]),
    default="latest",
    show_default=True,
    help="Which annotation of a task wins.",
)
@click.option(
    "--propagate",
    "then_propagate",
    is_flag=True,
    help="Then carry the imported corrections to the other frames (hmtools propagate, in place).",
)
@click.option(
    "--frames-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="With --propagate: the frames of the store's videos.",
)
@propagation_options
def ls_import_cmd(
    store: Path,
    project: str,
    url: str | None,
    api_key: str | None,
    policy: str,
    then_propagate: bool,
    frames_root: Path | None,
    dataset: str,
    annotations: Path | None,
    corrected: str,
    into: str,
    seg: dict,
) -> None:
    """Decode the submitted brush masks (pixel-exact) into the gtm layer: origin "accepted"
    when the annotator submitted the prediction unchanged, "corrected" otherwise. Skipped tasks
    are reported, not imported. All or nothing; rerunning is idempotent.

    \b
    Example:
      hmtools ls-import FineDiving-HM.h5 --project fd-pm
      hmtools ls-import pm.h5 --project fd-pm --propagate --frames-root frames/
    """
    from hmtools.annotation.labelstudio import ls_import

    if then_propagate and frames_root is None:
        raise click.UsageError("--propagate needs --frames-root")
    rep = ls_import(store, project, url=url, api_key=api_key, policy=policy)
    click.echo(
        f"imported {rep.imported} masks of {rep.videos} videos into gtm "
        f"({rep.corrected} corrected, {rep.accepted} accepted); {rep.remaining} tasks "
        f"still without annotation; {len(rep.skipped)} skipped"
    )
    for s in rep.skipped[:20]:
        click.echo(f"  skipped: {s}")
    if then_propagate:
        from hmtools.annotation.propagate import run_propagate

        prep = run_propagate(
            store,
            frames_root,
            store,
            build_segmenter(seg),
            dataset=dataset,
            annotations=annotations,
            corrected=corrected,
            into=into,
            overwrite=True,
        )
        _report(prep)


@main.command("ls-status", short_help="Done / remaining / skipped tasks per video.")
@click.option("--project", required=True, help="Project title or id.")
@_LS_URL
@_LS_KEY
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON (per video).")
def ls_status_cmd(project: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Progress of a correction project per video.

    \b
    Example:
      hmtools ls-status --project fd-pm
    """
    import json as _json

    from hmtools.annotation.labelstudio import ls_status

    st = ls_status(project, url=url, api_key=api_key)
    if as_json:
        click.echo(_json.dumps(st, indent=2))
        return
    click.echo(f"{'video':<50} {'done':>6} {'remaining':>10} {'skipped':>8}")
    for v, c in st.items():
        click.echo(f"{v:<50} {c['done']:>6} {c['remaining']:>10} {c['skipped']:>8}")
    tot = {k: sum(c[k] for c in st.values()) for k in ("done", "remaining", "skipped")}
    click.echo(f"{'total':<50} {tot['done']:>6} {tot['remaining']:>10} {tot['skipped']:>8}")
