"""Store commands: pack, unpack, validate, info, merge."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from hmtools.cli import main
from hmtools.masks import (
    DEFAULT_THRESHOLD,
    format_summary,
    merge_stores,
    pack_coco,
    pack_folder,
    summarize_store,
    unpack_coco,
    unpack_png,
    validate_store,
)

_PATH = click.Path(path_type=Path)


@main.command(short_help="Import mask folders or COCO JSON into an -HM store.")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=_PATH, required=True, help="The -HM store to write (.h5).")
@click.option("--layer", default="gtm", show_default=True, help="Layer: gtm, pm or another name.")
@click.option("--name", default=None, help="Dataset name stored in the file (default: file stem).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["folder", "coco"]),
    default="folder",
    show_default=True,
    help="SOURCE is a mask folder tree or a COCO JSON file.",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "finediving", "folder"]),
    default="auto",
    show_default=True,
    help="finediving: ROOT/<video>/<clip>/<frame>; folder: ROOT/<video>/<frame>.",
)
@click.option(
    "--threshold",
    type=int,
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="Gray value >= threshold is foreground (JPEG masks are noisy around 0/255).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--append", is_flag=True, help="Add videos/layers to an existing store.")
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Pack the good videos and list the bad ones (default: all-or-nothing).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def pack(
    source: Path,
    out: Path,
    layer: str,
    name: str | None,
    fmt: str,
    layout: str,
    threshold: int,
    overwrite: bool,
    append: bool,
    skip_bad: bool,
    quiet: bool,
) -> None:
    """Import masks (folder tree of JPEG/PNG masks, or COCO JSON) into an -HM store.

    \b
    Example:
      hmtools pack FineDiving-HM/masks --out FineDiving-HM.h5 --layer gtm
      hmtools pack pm.json --format coco --out FineDiving-HM.h5 --layer pm --append
    """
    if fmt == "coco":
        rep = pack_coco(
            source,
            out,
            layer=layer,
            name=name,
            overwrite=overwrite,
            append=append,
            skip_bad=skip_bad,
            progress=not quiet,
        )
    else:
        rep = pack_folder(
            source,
            out,
            layer=layer,
            name=name,
            layout=layout,
            threshold=threshold,
            overwrite=overwrite,
            append=append,
            skip_bad=skip_bad,
            progress=not quiet,
        )
    click.echo(f"packed {rep.masks} masks of {rep.videos} videos into {out} (layer {layer})")
    if rep.bad:
        click.echo(f"skipped {len(rep.bad)} bad videos:", err=True)
        for vid, why in rep.bad:
            click.echo(f"  {vid}: {why}", err=True)


@main.command(short_help="Export a layer as PNG masks or COCO JSON.")
@click.argument("store", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=_PATH,
    required=True,
    help="Folder for PNG masks, or the .json file for COCO.",
)
@click.option("--layer", default=None, help="Layer to export (required if the store has several).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "coco"]),
    default="png",
    show_default=True,
    help="png: a mask folder tree (0/255); coco: one COCO JSON (RLE; empty masks keep their "
    "image entry, no annotation)",
)
@click.option("--overwrite", is_flag=True, help="Write into a non-empty folder / replace the JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def unpack(
    store: Path, out: Path, layer: str | None, fmt: str, overwrite: bool, quiet: bool
) -> None:
    """Export a layer as a PNG folder tree (0/255, same layout) or a COCO JSON file.

    \b
    Example:
      hmtools unpack FineDiving-HM.h5 --layer gtm --out masks_png/
      hmtools unpack FineDiving-HM.h5 --layer pm --format coco --out pm.json
    """
    if fmt == "coco":
        n = unpack_coco(store, out, layer=layer, overwrite=overwrite)
        click.echo(f"wrote {n} annotations (non-empty masks) to {out}")
        return
    n = unpack_png(store, out, layer=layer, overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {n} masks to {out}")


@main.command(short_help="Check a store against the schema (exit 1 on problems).")
@click.argument("store", type=_PATH)
@click.option("--progress", is_flag=True, help="Show a progress bar.")
def validate(store: Path, progress: bool) -> None:
    """Check the whole schema; one line per problem, exit code 1 on any.

    \b
    Example:
      hmtools validate FineDiving-HM.h5
    """
    problems = validate_store(store, progress=progress)
    for p in problems:
        click.echo(f"INVALID {p}")
    if problems:
        click.echo(f"{store}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"OK {store}")


@main.command(short_help="Videos, masks per layer, file size, bytes per mask.")
@click.argument("store", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(store: Path, as_json: bool) -> None:
    """Videos, masks per layer, frames with both pm and gtm, file size, bytes per mask.

    \b
    Example:
      hmtools info FineDiving-HM.h5 --json
    """
    s = summarize_store(store)
    if as_json:
        d = asdict(s)
        d["masks"] = s.masks
        d["bytes_per_mask"] = s.bytes_per_mask
        click.echo(json.dumps(d, indent=2))
    else:
        click.echo(format_summary(s))


@main.command(short_help="Combine shard stores; refuses conflicting masks.")
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=_PATH, required=True, help="The merged store.")
@click.option("--name", default=None, help="Dataset name (default: the first shard's).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def merge(
    shards: tuple[Path, ...], out: Path, name: str | None, overwrite: bool, quiet: bool
) -> None:
    """Combine shard stores (e.g. from `pseudo-mask --shard k/n`) into one.

    Refuses, writing nothing, when two shards hold different masks for one frame.

    \b
    Example:
      hmtools merge pm.shard*.h5 --out FineDiving-HM.h5
    """
    st = merge_stores(shards, out, name=name, overwrite=overwrite, progress=not quiet)
    click.echo(f"merged {st['shards']} stores: {st['videos']} videos, {st['masks']} masks -> {out}")
