"""``hmtools stats``: the statistics report a dataset builder publishes with an -HM store.

Counts follow the paper's Fig. 4: a mask counts when it labels an athlete (is not empty); empty
masks are counted apart. Coverage is measured on the frames that show an athlete (``gtm`` not
empty). The pm-vs-gtm agreement is split as :mod:`hmtools.masks.agreement` defines it (IoU and
the DAVIS boundary F on athlete frames, misses, false alarms). Counts, areas and IoU are computed
on the stored RLEs and per-mask arrays; only the boundary F-measure decodes masks.

The report folder holds ``summary.json`` (the figures, keys in the README), one CSV per table,
PNG plots, ``report.md`` (tables as Markdown tables) and, given the frames, ``examples.png``
(the worst-agreeing frames with both contours). It is written in a staging folder and moved into
place at the end: a failure leaves no half report.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hmtools.datasets.records import load_dataset  # noqa: E402
from hmtools.errors import InputError  # noqa: E402
from hmtools.fsutil import staged_dir  # noqa: E402
from hmtools.interpretations import event_group  # noqa: E402
from hmtools.masks import LAYER_GTM, LAYER_PM, ORIGINS, MaskStore  # noqa: E402
from hmtools.masks.agreement import layer_agreement, per_group, summarize  # noqa: E402
from hmtools.progress import progress_bar  # noqa: E402

log = logging.getLogger(__name__)


@dataclass
class StatsReport:
    out: Path
    tables: dict[str, pd.DataFrame]
    plots: list[Path]
    summary: str
    figures: dict


MASK_COLUMNS = [
    "video", "action_type", "group", "layer", "frame", "area", "area_frac", "box_w", "box_h",
    "score", "origin",
]  # fmt: skip


def collect(
    store_path: str | os.PathLike, action_types: dict | None = None, progress: bool = True
) -> dict[str, pd.DataFrame]:
    """``masks``: one row per stored mask; ``videos``: one row per video and layer (masks,
    non-empty, empty, frames without a mask)."""
    rows, videos = [], []
    with MaskStore(store_path) as store:
        for info in progress_bar(
            store.videos(), total=len(store), desc="stats", unit="video", disable=not progress
        ):
            at = (action_types or {}).get(info.video_id) or info.action_type or "unknown"
            group = event_group(info.video_id, at)
            for layer in info.layers:
                d = store.read_layer(info.video_id, layer)
                rows.append(
                    pd.DataFrame(
                        {
                            "video": info.name,
                            "action_type": at,
                            "group": group,
                            "layer": layer,
                            "frame": d.frame_index,
                            "area": d.area.astype(np.int64),
                            "area_frac": d.area / float(info.height * info.width),
                            "box_w": d.bbox[:, 2] / info.width,
                            "box_h": d.bbox[:, 3] / info.height,
                            "score": d.score,
                            "origin": [ORIGINS.get(int(o), str(o)) for o in d.origin],
                        }
                    )
                )
                nonempty = int((d.area > 0).sum())
                videos.append(
                    {
                        "video": info.name,
                        "action_type": at,
                        "group": group,
                        "layer": layer,
                        "num_frames": info.num_frames,
                        "masks": len(d),
                        "nonempty": nonempty,
                        "empty": len(d) - nonempty,
                        "frames_without_mask": max(0, info.num_frames - len(d)),
                    }
                )
    masks = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=MASK_COLUMNS)
    return {"masks": masks, "videos": pd.DataFrame(videos)}


def _counts(masks: pd.DataFrame, by: str) -> pd.DataFrame:
    """Non-empty (Fig. 4) and empty masks per ``by`` and layer."""
    m = masks.assign(nonempty=masks["area"] > 0)
    t = (
        m.groupby([by, "layer"])["nonempty"]
        .agg(nonempty="sum", masks="size")
        .reset_index()
        .astype({"nonempty": int})
    )
    t["empty"] = t["masks"] - t["nonempty"]
    return t.sort_values(["layer", "nonempty"], ascending=[True, False], kind="stable")[
        [by, "layer", "nonempty", "empty"]
    ]


def _athlete_coverage(masks: pd.DataFrame) -> dict[str, dict]:
    """Per layer: of the frames whose gtm mask is not empty, how many have a non-empty mask in
    that layer (and how many have no mask in it at all)."""
    gt = masks[(masks["layer"] == LAYER_GTM) & (masks["area"] > 0)][["video", "frame"]]
    out = {}
    if not len(gt):
        return out
    for layer, d in masks.groupby("layer"):
        j = gt.merge(d[["video", "frame", "area"]], on=["video", "frame"], how="left")
        covered = int((j["area"] > 0).sum())
        out[layer] = {
            "athlete_frames": len(gt),
            "covered": covered,
            "coverage": covered / len(gt),
            "no_mask": int(j["area"].isna().sum()),
        }
    return out


def _layer_table(masks: pd.DataFrame, videos: pd.DataFrame, cover: dict) -> pd.DataFrame:
    rows = []
    for layer, v in videos.groupby("layer"):
        c = cover.get(layer, {})
        rows.append(
            {
                "layer": layer,
                "videos": int(v["video"].nunique()),
                "masks": int(v["masks"].sum()),
                "nonempty": int(v["nonempty"].sum()),
                "empty": int(v["empty"].sum()),
                "frames": int(v["num_frames"].sum()),
                "frames_without_mask": int(v["frames_without_mask"].sum()),
                "athlete_frames": c.get("athlete_frames"),
                "athlete_frames_covered": c.get("covered"),
                "athlete_frame_coverage": c.get("coverage"),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame, max_rows: int = 40, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (numbers to ``digits`` places; ``n/a`` for missing)."""

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.{digits}f}"
        return str(v).replace("|", "\\|")

    head = df.head(max_rows)
    lines = [
        "| " + " | ".join(map(str, head.columns)) + " |",
        "|" + "|".join("---" for _ in head.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in head.itertuples(index=False)]
    if len(df) > max_rows:
        lines.append(f"\n({len(df) - max_rows} more rows in the CSV)")
    return "\n".join(lines)


def build_report(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dataset: str = "finediving",
    annotations: str | os.PathLike | None = None,
    frames_root: str | os.PathLike | None = None,
    boundary: bool = True,
    progress: bool = True,
) -> StatsReport:
    """Write ``summary.json``, CSV tables, PNG plots and ``report.md`` (plus ``examples.png``
    with ``frames_root``) to ``out_dir``; see the module doc."""
    final = Path(out_dir)
    action_types = None
    if annotations is not None:
        action_types = {s.id: s.action_type for s in load_dataset(dataset, annotations)}
    t = collect(store_path, action_types, progress)
    masks, videos = t["masks"], t["videos"]
    with MaskStore(store_path) as store:
        name = store.name
        both = any(LAYER_PM in i.layers and LAYER_GTM in i.layers for i in store.videos())
    if not len(masks):
        raise InputError(f"{store_path}: the store holds no masks")
    tables: dict[str, pd.DataFrame] = {}
    cover = _athlete_coverage(masks)
    tables["layers"] = _layer_table(masks, videos, cover)
    tables["masks_per_action_type"] = _counts(masks, "action_type")
    tables["masks_per_group"] = _counts(masks, "group")
    tables["origins"] = masks.groupby(["layer", "origin"]).size().rename("masks").reset_index()
    ne = masks[masks["area"] > 0]
    tables["area_nonempty"] = (
        ne.groupby("layer")["area_frac"].describe(percentiles=[0.05, 0.5, 0.95]).reset_index()
    )
    pv = videos.pivot_table(
        index="video", columns="layer", values=["nonempty", "empty", "frames_without_mask"]
    )
    pv.columns = [f"{layer}_{what}" for what, layer in pv.columns]
    tables["per_video"] = videos.groupby("video")[["num_frames"]].max().join(pv).reset_index()
    figures: dict = {
        "store": str(store_path),
        "name": name,
        "videos": int(videos["video"].nunique()),
        "layers": {
            r["layer"]: {
                "masks": int(r["masks"]),
                "nonempty": int(r["nonempty"]),
                "empty": int(r["empty"]),
                "videos": int(r["videos"]),
                "frames_without_mask": int(r["frames_without_mask"]),
                "athlete_frame_coverage": r["athlete_frame_coverage"],
            }
            for r in tables["layers"].to_dict("records")
        },
    }
    agree = None
    if both:
        rows = layer_agreement(
            store_path, boundary=boundary, action_types=action_types, progress=progress
        )
        agree = summarize(rows)
        figures["pm_vs_gtm"] = agree.to_dict()
        figures["pm_vs_gtm"]["boundary"] = "DAVIS F, tolerance ceil(0.008 x diagonal) px"
        tables["agreement_per_video"] = per_group(rows, "video")
        tables["agreement_per_action_type"] = per_group(rows, "action_type")
        tables["agreement_frames"] = rows
    with staged_dir(final, overwrite=True) as out:  # nothing in final until all is written
        plots = _plots(out, name, tables, masks)
        if frames_root is not None:
            from hmtools.datasets.overlay import example_montage

            try:
                plots.append(
                    example_montage(
                        store_path,
                        frames_root,
                        out / "examples.png",
                        tables.get("agreement_per_video"),
                    )  # fmt: skip
                )
            except InputError as e:
                log.warning("no example montage: %s", e)
        summary = _summary_text(name, figures, tables)
        (out / "summary.json").write_text(json.dumps(figures, indent=2))
        for k, df in tables.items():
            df.to_csv(out / f"{k}.csv", index=False)
        (out / "report.md").write_text(_markdown(name, summary, tables, plots))
    return StatsReport(final, tables, [final / p.name for p in plots], summary, figures)


def _summary_text(name: str, figures: dict, tables: dict) -> str:
    lines = [f"{name}: {figures['videos']} videos"]
    for layer, d in figures["layers"].items():
        cov = d["athlete_frame_coverage"]
        lines.append(
            f"  layer {layer}: {d['nonempty']} masks with an athlete, {d['empty']} empty, in "
            f"{d['videos']} videos; {d['frames_without_mask']} frames without a mask"
            + ("" if cov is None else f"; covers {cov:.1%} of the frames that show an athlete")
        )
    a = figures.get("pm_vs_gtm")
    if a:
        f = a["boundary_f_mean"]
        lines.append(
            f"  pm vs gtm on {a['athlete_frames']} frames with an athlete (of {a['frames']} with"
            f" both): IoU mean {_f(a['iou_athlete_mean'])}, median {_f(a['iou_athlete_median'])}"
            + ("" if f is None else f", boundary F {_f(f)}, J&F {_f(a['jf_mean'])}")
            + f"; missed {a['missed']}, false alarms {a['false_alarms']}"
            f" (both empty: {a['both_empty']}, not counted)"
        )
        worst = tables["agreement_per_video"].iloc[0]
        lines.append(f"  worst video {worst['video']} (IoU {_f(worst['iou_mean'])})")
    return "\n".join(lines)


def _f(v: object) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _bar(ax, labels: list[str], values: list[float], title: str, ylabel: str, **kw) -> None:
    ax.bar(range(len(values)), values, **{"color": "#3b6ea8", **kw})
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7 if len(labels) > 20 else 9)
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def _plots(out: Path, name: str, tables: dict, masks: pd.DataFrame) -> list[Path]:
    plots = []
    layers = sorted(masks["layer"].unique())
    counts = tables["masks_per_action_type"]
    fig, axes = plt.subplots(
        len(layers), 1, figsize=(max(6, 0.25 * counts["action_type"].nunique() + 3), 3.2 * len(layers)),
        squeeze=False,
    )  # fmt: skip
    for ax, layer in zip(axes[:, 0], layers, strict=True):
        d = counts[counts["layer"] == layer]
        x = np.arange(len(d))
        ax.bar(x, d["nonempty"], color="#3b6ea8", label="with an athlete")
        ax.bar(x, d["empty"], bottom=d["nonempty"], color="#d9d9d9", label="empty")
        ax.set_xticks(x)
        ax.set_xticklabels(d["action_type"], rotation=90, fontsize=7 if len(d) > 20 else 9)
        ax.set_title(f"{name}: masks per action type ({layer})")
        ax.set_ylabel("masks")
        ax.legend(fontsize=8)
    fig.tight_layout()
    plots.append(out / "masks_per_action_type.png")
    fig.savefig(plots[-1], dpi=110)
    plt.close(fig)
    ne = masks[masks["area"] > 0]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for layer in layers:
        d = ne[ne["layer"] == layer]
        a1.hist(d["area_frac"] * 100, bins=50, alpha=0.6, label=layer)
        a2.scatter(d["box_w"], d["box_h"], s=2, alpha=0.3, label=layer)
    a1.set_xlabel("mask area (% of frame), non-empty masks")
    a1.set_ylabel("masks")
    a1.legend()
    a2.set_xlabel("box width / frame width")
    a2.set_ylabel("box height / frame height")
    a2.legend(markerscale=5)
    fig.tight_layout()
    plots.append(out / "area_and_boxes.png")
    fig.savefig(plots[-1], dpi=110)
    plt.close(fig)
    pv = tables.get("agreement_per_video")
    if pv is not None and len(pv):
        fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(pv) + 3), 3.6))
        x = np.arange(len(pv))
        ax.bar(x - 0.2, pv["iou_mean"], 0.4, label="IoU (J)", color="#3b6ea8")
        ax.bar(x + 0.2, pv["boundary_f_mean"], 0.4, label="boundary F", color="#e09f3e")
        ax.set_xticks(x)
        ax.set_xticklabels(
            pv["video"] if len(pv) <= 60 else [""] * len(pv), rotation=90, fontsize=7
        )
        ax.set_ylim(0, 1)
        ax.set_title("pm vs gtm on frames with an athlete, per video (worst first)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        plots.append(out / "agreement_per_video.png")
        fig.savefig(plots[-1], dpi=110)
        plt.close(fig)
    return plots


_TITLES = {
    "layers": "Layers (counts of non-empty masks as in Fig. 4; coverage of the frames with an athlete)",
    "masks_per_action_type": "Masks per action type (non-empty, empty)",
    "masks_per_group": "Masks per group (individual / synchronised; AQA-7 by sport)",
    "origins": "Origins",
    "area_nonempty": "Area of non-empty masks (fraction of the frame)",
    "agreement_per_action_type": "pm vs gtm per action type (frames with an athlete)",
    "agreement_per_video": "pm vs gtm per video (worst first)",
}


def _markdown(name: str, summary: str, tables: dict, plots: list[Path]) -> str:
    md = [f"# {name}: mask statistics", ""]
    md += [f"- {ln.strip()}" for ln in summary.splitlines()[1:]] + [""]
    for k, title in _TITLES.items():
        if k in tables:
            md += [f"## {title}", "", markdown_table(tables[k]), ""]
    for p in plots:
        md += [f"![{p.stem}]({p.name})", ""]
    md += [
        "Figures as JSON: `summary.json`. Tables as CSV: "
        + ", ".join(f"`{k}.csv`" for k in tables),
        "",
    ]
    return "\n".join(md)
