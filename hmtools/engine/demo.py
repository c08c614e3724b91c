"""``hmtools demo``: the whole pipeline on synthetic data, on a laptop CPU, in minutes."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from hmtools.engine.config import TrainConfig
from hmtools.engine.experiment import gtm_vs_pm
from hmtools.errors import InputError

log = logging.getLogger(__name__)


def run_demo(
    out: str | os.PathLike,
    *,
    videos: int = 24,
    seed: int = 0,
    epochs: int = 8,
    height: int = 128,
    overwrite: bool = False,
    progress: bool = True,
    echo=print,
) -> dict:
    """synth -> pseudo-mask (weight-free) -> gtm from the synthetic truth -> stats ->
    experiment gtm-vs-pm (small config). Returns the experiment report."""
    from hmtools.annotation.pseudo_mask import run_pseudo_mask
    from hmtools.annotation.segmenters import default_weight_free, make_segmenter
    from hmtools.datasets.stats import build_report
    from hmtools.datasets.synth import generate
    from hmtools.masks import merge_stores

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty: pass --overwrite or another --out")
    t0 = time.perf_counter()
    data = out / "data"
    echo(f"[1/5] hmtools synth {data} --videos {videos} --seed {seed}")
    generate(data, videos, seed, height=height, overwrite=True, progress=progress)
    pm = out / "pm.h5"
    echo(
        f"[2/5] hmtools pseudo-mask {data / 'frames'} --dataset finediving (weight-free "
        f"{default_weight_free()}, automatic athlete finder) --out {pm}"
    )
    rep = run_pseudo_mask(
        data / "frames",
        pm,
        make_segmenter(default_weight_free()),
        dataset="finediving",
        annotations=data / "Annotations",
        overwrite=True,
        progress=progress,
    )
    if rep.failures:
        echo(f"      {len(rep.failures)} videos failed: {rep.failures[:3]}")
    store = out / "Synth-HM.h5"
    echo(
        f"[3/5] hmtools merge {data / 'Synth-HM.h5'} (gtm: the synthetic truth) {pm} --out {store}"
    )
    merge_stores([data / "Synth-HM.h5", pm], store, name="Synth-HM", overwrite=True, progress=False)
    echo(f"[4/5] hmtools stats {store} --out {out / 'stats'}")
    st = build_report(store, out / "stats", annotations=data / "Annotations", progress=False)
    echo("      " + st.summary.replace("\n", "\n      "))
    echo(
        f"[5/5] hmtools experiment gtm-vs-pm --config small --epochs {epochs} --out "
        f"{out / 'experiment'}"
    )
    cfg = TrainConfig(
        dataset="finediving",
        data_root=str(data / "frames"),
        annotations=str(data / "Annotations"),
        masks_file=str(store),
        model="small",
        epochs=epochs,
        warmup_epochs=1,
        seed=seed,
        workers=2,
        out=str(out / "experiment" / "gtm"),
    )
    report = gtm_vs_pm(cfg, out / "experiment", progress=progress)
    echo(f"done in {time.perf_counter() - t0:.0f} s")
    echo(
        f"  GTM: rho {report['gtm']['test_spearman_rho']:.3f}, R-l2 "
        f"{report['gtm']['test_rl2_x100']:.3f}   PM: rho {report['pm']['test_spearman_rho']:.3f},"
        f" R-l2 {report['pm']['test_rl2_x100']:.3f}   mask IoU pm vs gtm "
        f"{report['mask_iou_pm_vs_gtm']:.3f} (frames with an athlete)"
    )
    d = report.get("gtm_minus_pm_rho")
    if d:
        echo(
            f"  rho(GTM) - rho(PM) = {d['estimate']:.3f}, 95 % bootstrap interval "
            f"[{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}] over {d['test_videos']} test videos"
        )
    for layer in ("gtm", "pm"):
        m = report[layer]
        ci = m.get("gain_over_exemplar_mean_ci95")
        if m.get("gain_over_exemplar_mean_rho") is not None and ci:
            echo(
                f"  {layer.upper()}: gain over the exemplar means {m['gain_over_exemplar_mean_rho']:+.3f}"
                f", 95 % interval [{ci[0]:+.3f}, {ci[1]:+.3f}]"
            )
    for w in report.get("warnings", []):
        echo(f"  warning: {w}")
    gain_ci = report["gtm"].get("gain_over_exemplar_mean_ci95")
    if not gain_ci or gain_ci[0] <= 0:
        n = (report.get("gtm_minus_pm_rho") or {}).get("test_videos", "a few")
        echo(
            f"  This demo is a pipeline check: its {n} test videos are too few to show the model "
            "adding to exemplar selection (the interval holds 0). `python benchmarks/learning.py "
            "--seeds 5 --variants gtm` shows learning on ~180 held-out clips after ~420 training "
            "clips (~35-50 min on 2 CPU cores; without --variants it also trains pm, no-mask and "
            "shuffled-mask runs)."
        )
    echo(f"  report: {out / 'experiment' / 'report.md'}   stats: {out / 'stats' / 'report.md'}")
    return report
