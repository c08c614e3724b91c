"""``hmtools experiment gtm-vs-pm``: the paper's Table 14 in one command."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pandas as pd

from hmtools.engine.config import TrainConfig
from hmtools.engine.evaluate import rho_interval
from hmtools.engine.train import train
from hmtools.errors import InputError
from hmtools.masks import LAYER_GTM, LAYER_PM, MaskStore
from hmtools.masks.agreement import layer_agreement, summarize

#: The paper's Table 14 (FineDiving-HM, the full config), shown beside a run for reference.
PAPER_TABLE_14 = {
    "gtm": {"spearman_rho": 0.9501, "rl2_x100": 0.2294},
    "pm": {"spearman_rho": 0.9495, "rl2_x100": 0.2334},
}
#: A run whose predicted offsets (predicted - exemplar mean) spread less than this, in score
#: points (standard deviation over the test videos), has collapsed onto exemplar selection.
DEGENERATE_OFFSET_STD = 0.05


def degeneracy_warnings(preds: dict[str, pd.DataFrame]) -> list[str]:
    """Words for a run that did not learn: offsets that do not vary (every prediction the
    exemplar mean plus a constant) and gtm and pm predictions that are identical."""
    out = []
    for layer, df in preds.items():
        off = (df["predicted"] - df["exemplar_mean"]).to_numpy()
        sd = float(off.std())
        if sd < DEGENERATE_OFFSET_STD:
            out.append(
                f"{layer}: the predicted offsets (predicted - exemplar mean) spread by "
                f"{sd:.4f} points (std over {len(off)} test videos, threshold "
                f"{DEGENERATE_OFFSET_STD}): every prediction is the exemplar mean plus "
                f"{float(off.mean()):+.3f}, the model adds nothing to exemplar selection"
            )
    if len(preds) == 2:
        a, b = (preds[k].set_index("video")["predicted"] for k in (LAYER_GTM, LAYER_PM))
        common = a.index.intersection(b.index)
        if len(common) and float((a[common] - b[common]).abs().max()) < 1e-6:
            out.append(
                "gtm and pm predictions are identical on every test video: the masks made "
                "no difference to what the model learned"
            )
    return out


def gtm_vs_pm(base: TrainConfig, out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Train and evaluate ``base`` once with the ``gtm`` and once with the ``pm`` layer (same
    seed, same pairs and augmentations), then write ``report.md``, ``report.json`` and
    ``report.png`` to ``out``. Reported metrics are those of the final epoch (no selection on
    the test set); the best epoch's are added as ``best_*``."""
    out = Path(out)
    if not base.masks_file:
        raise InputError("the experiment needs --masks-file with both a gtm and a pm layer")
    with MaskStore(base.masks_file) as store:
        layers = store.layer_names()
    missing = [x for x in (LAYER_GTM, LAYER_PM) if x not in layers]
    if missing:
        raise InputError(
            f"{base.masks_file}: no {' and no '.join(missing)} layer "
            f"(it has {', '.join(layers) or 'none'})"
        )
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    prefixes: dict = {}  # the frozen I3D prefix does not depend on the masks: compute it once
    for layer in (LAYER_GTM, LAYER_PM):
        cfg = dataclasses.replace(base, masks=layer, out=str(out / layer))
        res = train(cfg, progress=progress, prefix_store=prefixes)
        final = res.history[-1]
        report[layer] = {
            "test_spearman_rho": final.get("test_spearman_rho"),
            "test_rl2_x100": final.get("test_rl2_x100"),
            "test_aiou_50": final.get("test_aiou_50"),
            "test_aiou_75": final.get("test_aiou_75"),
            "test_exemplar_mean_rho": final.get("test_exemplar_mean_rho"),
            "best_spearman_rho": res.best.get("test_spearman_rho"),
            "best_rl2_x100": res.best.get("test_rl2_x100"),
            "best_epoch": res.best.get("epoch"),
            "epochs": len(res.history),
        }
    ints = _intervals(out)
    for layer in (LAYER_GTM, LAYER_PM):
        report[layer].update(ints[layer])
    report["gtm_minus_pm_rho"] = ints["difference"]
    # the masks' agreement as `hmtools stats` splits it (frames with an athlete; misses, false
    # alarms apart), not a mean that counts empty-against-empty frames as IoU 1
    agree = summarize(layer_agreement(base.masks_file)).to_dict()
    report["mask_agreement"] = agree
    report["mask_iou_pm_vs_gtm"] = agree["iou_athlete_mean"]
    preds = {
        layer: pd.read_csv(out / layer / "predictions_last.csv", dtype={"video": str})
        for layer in (LAYER_GTM, LAYER_PM)
        if (out / layer / "predictions_last.csv").exists()
    }
    report["warnings"] = degeneracy_warnings(preds)
    report["paper_table_14"] = PAPER_TABLE_14
    report["config"] = {
        "model": base.model,
        "epochs": base.epochs,
        "seed": base.seed,
        "dataset": base.dataset,
        "selection": base.selection,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _write_markdown(out / "report.md", report)
    _plot(out / "report.png", report)
    return report


def _intervals(out: Path) -> dict:
    """95 % bootstrap intervals over the test videos of each run's final rho, of its gain over
    the exemplar means' rho, and of the paired difference rho(gtm) - rho(pm) (the same videos,
    so the pairing removes the test set's luck): whether gtm beat pm beyond chance. ``None``
    values when the two runs' final predictions are missing or do not cover the same >= 3
    videos."""
    keys = ("test_spearman_rho_ci95", "gain_over_exemplar_mean_rho", "gain_over_exemplar_mean_ci95")
    r: dict = {layer: dict.fromkeys(keys) for layer in (LAYER_GTM, LAYER_PM)}
    r["difference"] = None
    files = {layer: out / layer / "predictions_last.csv" for layer in (LAYER_GTM, LAYER_PM)}
    if not all(f.exists() for f in files.values()):  # runs finished by an older hmtools
        return r
    p = {layer: pd.read_csv(f, dtype={"video": str}) for layer, f in files.items()}
    both = p[LAYER_GTM].merge(p[LAYER_PM], on="video", suffixes=("_gtm", "_pm"))
    if len(both) < 3 or len(both) != len(p[LAYER_GTM]):
        return r
    t = both["true_gtm"].to_numpy()
    g, m = both["predicted_gtm"].to_numpy(), both["predicted_pm"].to_numpy()
    base = both["exemplar_mean_gtm"].to_numpy()  # the same voters in both runs
    for layer, pred in ((LAYER_GTM, g), (LAYER_PM, m)):
        gain = rho_interval(t, pred, base)
        # does the model add anything to exemplar selection beyond the test set's chance?
        r[layer] = dict(
            zip(keys, (rho_interval(t, pred)["ci"], gain["estimate"], gain["ci"]), strict=True)
        )
    d = rho_interval(t, g, m)
    r["difference"] = {
        "estimate": d["estimate"],
        "ci95": d["ci"],
        "share_of_resamples_gtm_better": d["share_positive"],
        "test_videos": len(both),
    }
    return r


def _interval(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _fmt(v: object, nd: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _write_markdown(path: Path, r: dict) -> None:
    lines = [
        "# GTM vs PM (Uni-FineParser, Table 14 style)",
        "",
        f"Model config `{r['config']['model']}`, {r['config']['epochs']} epochs, seed "
        f"{r['config']['seed']}, exemplars by `{r['config']['selection']}`. Metrics of the final "
        "epoch on the test split (best epoch in brackets).",
        "",
        "| Masks | Spearman ρ ↑ | ρ 95 % interval | R-ℓ2 (×100) ↓ | AIoU@0.5 | AIoU@0.75 "
        "| ρ of exemplar means | gain over them [95 %] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for layer, name in ((LAYER_GTM, "GTM (ground truth)"), (LAYER_PM, "PM (pseudo)")):
        m = r[layer]
        lines.append(
            f"| {name} | {_fmt(m['test_spearman_rho'])} ({_fmt(m['best_spearman_rho'])})"
            f" | {_interval(m.get('test_spearman_rho_ci95'))}"
            f" | {_fmt(m['test_rl2_x100'])} ({_fmt(m['best_rl2_x100'])}) | "
            f"{_fmt(m['test_aiou_50'], 2)} | {_fmt(m['test_aiou_75'], 2)} | "
            f"{_fmt(m['test_exemplar_mean_rho'])} | "
            f"{_fmt(m.get('gain_over_exemplar_mean_rho'), 3)} "
            f"{_interval(m.get('gain_over_exemplar_mean_ci95'))} |"
        )
    t = r["paper_table_14"]
    lines += [
        f"| *paper, Table 14: GTM (FineDiving-HM, full config; reference)* | "
        f"*{t['gtm']['spearman_rho']:.4f}* | | *{t['gtm']['rl2_x100']:.4f}* | | | | |",
        f"| *paper, Table 14: PM (reference)* | *{t['pm']['spearman_rho']:.4f}* | | "
        f"*{t['pm']['rl2_x100']:.4f}* | | | | |",
    ]
    if r.get("warnings"):
        lines += ["", "**Warnings: this comparison is degenerate.**", ""]
        lines += [f"- {w}" for w in r["warnings"]]
    d = r.get("gtm_minus_pm_rho")
    if d:
        lo, hi = d["ci95"]
        verdict = (
            "GTM beat PM beyond the test set's chance"
            if lo > 0
            else "PM beat GTM beyond the test set's chance"
            if hi < 0
            else "not distinguishable on this test set"
        )
        lines += [
            "",
            f"ρ(GTM) − ρ(PM) = **{_fmt(d['estimate'], 3)}**, 95 % paired bootstrap interval "
            f"{_interval(d['ci95'])} over {d['test_videos']} test videos (GTM ahead in "
            f"{d['share_of_resamples_gtm_better']:.0%} of the resamples): {verdict}.",
        ]
    lines += [
        "",
        "ρ of exemplar means: the rank correlation of the voters' mean score alone "
        "(every Δ = 0) -- what exemplar selection gives before the model adds anything; the "
        "gain is the model's ρ minus it, with a paired 95 % bootstrap interval over the test "
        "videos (an interval above 0: the model adds something beyond the test set's chance).",
        "",
        _agreement_line(r["mask_agreement"]),
        "",
        "![GTM vs PM](report.png)",
        "",
    ]
    path.write_text("\n".join(lines))


def _agreement_line(a: dict) -> str:
    return (
        f"Masks, pm against gtm on the {a['athlete_frames']} frames with an athlete (of "
        f"{a['frames']} with both): IoU **{_fmt(a['iou_athlete_mean'])}**, boundary F "
        f"{_fmt(a['boundary_f_mean'])}, J&F {_fmt(a['jf_mean'])}; pm missed the athlete on "
        f"{a['missed']} frames and marked one on {a['false_alarms']} frames without "
        "(`hmtools stats` has the per-video split)."
    )


def _plot(path: Path, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(10, 3.2))
    names = ["GTM", "PM"]
    for a, key, title in (
        (ax[0], "test_spearman_rho", "Spearman ρ (↑)"),
        (ax[1], "test_rl2_x100", "R-ℓ2 ×100 (↓)"),
    ):
        vals = [r[LAYER_GTM][key] or 0.0, r[LAYER_PM][key] or 0.0]
        err = None
        cis = [r[x].get(key + "_ci95") for x in (LAYER_GTM, LAYER_PM)]
        if all(cis):
            pairs = list(zip(vals, cis, strict=True))  # percentile bounds may miss the estimate
            err = [[max(0.0, v - c[0]) for v, c in pairs], [max(0.0, c[1] - v) for v, c in pairs]]
        a.bar(names, vals, color=["#2a7f62", "#c8553d"], yerr=err, capsize=4)
        a.set_title(title)
        for i, v in enumerate(vals):
            a.text(i, v, f"{v:.3f}", ha="center", va="bottom")
    ax[2].bar(["pm vs gtm"], [r["mask_iou_pm_vs_gtm"]], color="#3b6ea8")
    ax[2].set_ylim(0, 1)
    ax[2].set_title("mask IoU, frames with an athlete")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
