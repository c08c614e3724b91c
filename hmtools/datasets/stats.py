"""``hmtools stats``: the statistics report a dataset builder publishes with an -HM store.

Everything is computed on the stored RLEs and per-mask arrays (area, bbox, origin) without
decoding a mask; pm-vs-gtm IoU uses ``pycocotools.mask.iou`` on the RLEs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm import tqdm  # noqa: E402

from hmtools.datasets.records import load_dataset  # noqa: E402
from hmtools.fsutil import staged_dir  # noqa: E402
from hmtools.masks import LAYER_GTM, LAYER_PM, ORIGINS, MaskStore  # noqa: E402


@dataclass
class StatsReport:
    out: Path
    tables: dict[str, pd.DataFrame]
    plots: list[Path]
    summary: str


def _group_of(name: str, video_id: tuple) -> str:
    """Event group used in the paper's Fig. 4: synchronised vs individual diving; for AQA-7 the
    sport class is the first id component."""
    first = str(video_id[0])
    if "synchron" in first.lower() or "sync_" in first.lower():
        return "synchronised"
    return name or "dataset"


def collect(
    store_path: str | os.PathLike, action_types: dict | None = None, progress: bool = True
) -> dict[str, pd.DataFrame]:
    """Per-mask and per-video tables of a store (optionally relabelling action types)."""
    rows, videos, ious = [], [], []
    with MaskStore(store_path) as store:
        name = store.name
        for info in tqdm(
            store.videos(), total=len(store), desc="stats", unit="video", disable=not progress
        ):
            at = (action_types or {}).get(info.video_id) or info.action_type or "unknown"
            layers = {}
            for layer in info.layers:
                d = store.read_layer(info.video_id, layer)
                layers[layer] = d
                frac = d.area / float(info.height * info.width)
                rows.append(
                    pd.DataFrame(
                        {
                            "video": info.name,
                            "action_type": at,
                            "layer": layer,
                            "frame": d.frame_index,
                            "area": d.area,
                            "area_frac": frac,
                            "box_w": d.bbox[:, 2] / info.width,
                            "box_h": d.bbox[:, 3] / info.height,
                            "score": d.score,
                            "origin": [ORIGINS.get(int(o), str(o)) for o in d.origin],
                        }
                    )
                )
                videos.append(
                    {
                        "video": info.name,
                        "action_type": at,
                        "group": _group_of(name, info.video_id),
                        "layer": layer,
                        "masks": len(d),
                        "num_frames": info.num_frames,
                        "coverage": len(d) / info.num_frames if info.num_frames else np.nan,
                        "empty_masks": int((d.area == 0).sum()),
                        "mean_area_frac": float(frac.mean()) if len(d) else np.nan,
                    }
                )
            if LAYER_PM in layers and LAYER_GTM in layers:
                pm, gt = layers[LAYER_PM], layers[LAYER_GTM]
                common, iou = pm.iou_with(gt, info.height, info.width)
                if len(common):
                    ious.append(
                        pd.DataFrame(
                            {"video": info.name, "action_type": at, "frame": common, "iou": iou}
                        )
                    )
    masks = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(
            columns=[
                "video",
                "action_type",
                "layer",
                "frame",
                "area",
                "area_frac",
                "box_w",
                "box_h",
                "score",
                "origin",
            ]
        )
    )
    return {
        "masks": masks,
        "videos": pd.DataFrame(videos),
        "ious": pd.concat(ious, ignore_index=True)
        if ious
        else pd.DataFrame(columns=["video", "action_type", "frame", "iou"]),
        "name": pd.DataFrame({"name": [name]}),
    }


def _bar(ax, labels: list[str], values: list[float], title: str, ylabel: str) -> None:
    ax.bar(range(len(values)), values, color="#3b6ea8")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7 if len(labels) > 20 else 9)
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def build_report(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dataset: str = "finediving",
    annotations: str | os.PathLike | None = None,
    progress: bool = True,
) -> StatsReport:
    """Write CSV tables, PNG plots and ``report.md`` to ``out_dir``; return them."""
    final = Path(out_dir)
    action_types = None
    if annotations is not None:
        action_types = {s.id: s.action_type for s in load_dataset(dataset, annotations)}
    t = collect(store_path, action_types, progress)
    masks, videos, ious = t["masks"], t["videos"], t["ious"]
    name = str(t["name"]["name"][0])
    tables: dict[str, pd.DataFrame] = {}
    tables["masks_per_action_type"] = (
        masks.groupby(["action_type", "layer"])
        .size()
        .rename("masks")
        .reset_index()
        .sort_values(["layer", "masks"], ascending=[True, False])
    )
    tables["masks_per_group"] = videos.groupby(["group", "layer"])["masks"].sum().reset_index()
    tables["coverage"] = (
        videos.groupby("layer")
        .agg(
            videos=("video", "nunique"),
            masks=("masks", "sum"),
            frames=("num_frames", "sum"),
            empty_masks=("empty_masks", "sum"),
        )
        .reset_index()
    )
    tables["coverage"]["coverage"] = tables["coverage"]["masks"] / tables["coverage"]["frames"]
    tables["origins"] = masks.groupby(["layer", "origin"]).size().rename("masks").reset_index()
    tables["area"] = (
        masks.groupby("layer")["area_frac"].describe(percentiles=[0.05, 0.5, 0.95]).reset_index()
    )
    tables["per_video"] = videos
    if len(ious):
        per_video = (
            ious.groupby(["video", "action_type"])["iou"]
            .agg(["count", "mean", "min"])
            .reset_index()
            .rename(columns={"count": "frames", "mean": "mean_iou", "min": "min_iou"})
            .sort_values("mean_iou")
        )
        tables["iou_per_video"] = per_video
        tables["iou_per_action_type"] = (
            ious.groupby("action_type")["iou"]
            .agg(["count", "mean", "median"])
            .reset_index()
            .rename(columns={"count": "frames", "mean": "mean_iou", "median": "median_iou"})
            .sort_values("mean_iou")
        )
    with staged_dir(final, overwrite=True) as out:  # nothing in final until all is written
        return _write_report(out, final, name, tables, masks, videos, ious)


def _write_report(out, final, name, tables, masks, videos, ious) -> StatsReport:
    for k, df in tables.items():
        df.to_csv(out / f"{k}.csv", index=False)

    plots = []
    layers = sorted(masks["layer"].unique()) if len(masks) else []
    if layers:
        fig, axes = plt.subplots(
            len(layers),
            1,
            figsize=(max(6, 0.25 * masks["action_type"].nunique() + 3), 3.2 * len(layers)),
            squeeze=False,
        )
        for ax, layer in zip(axes[:, 0], layers, strict=True):
            d = tables["masks_per_action_type"].query("layer == @layer")
            _bar(
                ax,
                d["action_type"].tolist(),
                d["masks"].tolist(),
                f"{name}: masks per action type ({layer})",
                "masks",
            )
        fig.tight_layout()
        plots.append(out / "masks_per_action_type.png")
        fig.savefig(plots[-1], dpi=110)
        plt.close(fig)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for layer in layers:
            d = masks[masks["layer"] == layer]
            a1.hist(d["area_frac"] * 100, bins=50, alpha=0.6, label=layer)
            a2.scatter(d["box_w"], d["box_h"], s=2, alpha=0.3, label=layer)
        a1.set_xlabel("mask area (% of frame)")
        a1.set_ylabel("masks")
        a1.legend()
        a2.set_xlabel("box width / frame width")
        a2.set_ylabel("box height / frame height")
        a2.legend(markerscale=5)
        fig.tight_layout()
        plots.append(out / "area_and_boxes.png")
        fig.savefig(plots[-1], dpi=110)
        plt.close(fig)
    if len(ious):
        pv = tables["iou_per_video"]
        fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(pv) + 3), 3.6))
        _bar(
            ax,
            pv["video"].tolist() if len(pv) <= 60 else [""] * len(pv),
            pv["mean_iou"].tolist(),
            "pm vs gtm mean IoU per video (lowest = most correction)",
            "IoU",
        )
        ax.set_ylim(0, 1)
        fig.tight_layout()
        plots.append(out / "iou_per_video.png")
        fig.savefig(plots[-1], dpi=110)
        plt.close(fig)

    cov = tables["coverage"]
    lines = [f"{name}: {videos['video'].nunique() if len(videos) else 0} videos"]
    for _, r in cov.iterrows():
        lines.append(
            f"  layer {r['layer']}: {int(r['masks'])} masks in {int(r['videos'])} videos,"
            f" coverage {r['coverage']:.1%}, empty {int(r['empty_masks'])}"
        )
    if len(ious):
        lines.append(
            f"  pm vs gtm: mean IoU {ious['iou'].mean():.3f} over {len(ious)} frames; "
            f"worst video {tables['iou_per_video'].iloc[0]['video']} "
            f"({tables['iou_per_video'].iloc[0]['mean_iou']:.3f})"
        )
    summary = "\n".join(lines)
    md = [f"# {name}: mask statistics", "", "```", summary, "```", ""]
    for k, df in tables.items():
        if k == "per_video":
            continue
        md += [
            f"## {k.replace('_', ' ')}",
            "",
            df.head(40).to_markdown(index=False)
            if _has_tabulate()
            else "```\n" + df.head(40).to_string(index=False) + "\n```",
            "",
        ]
    for p in plots:
        md += [f"![{p.stem}]({p.name})", ""]
    md += ["Tables as CSV: " + ", ".join(f"`{k}.csv`" for k in tables), ""]
    (out / "report.md").write_text("\n".join(md))
    return StatsReport(final, tables, [final / p.name for p in plots], summary)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
