"""Does Uni-FineParser (small config) learn, and do its masks matter? Held-out synthetic sets.

Per data seed: ``hmtools synth`` (``--videos`` clips, ``--test-share`` of each dive number's
clips held out: 600 x 0.3 gives 420 training and 180 test clips), weight-free pseudo masks
(``pm``, as the demo makes them), then on the same split:

- the exemplar-mean baseline (every offset 0) and a ridge probe on the frozen Kinetics features
  (the best linear read-out of the backbone, ``benchmarks/feature_probe.py``): the ceiling a
  fine-tuned model should at least reach;
- the small config trained with ``gtm`` masks, ``pm`` masks, no mask loss (L_A off), and the
  ``gtm`` masks shuffled between videos (each video supervised by another video's masks,
  stretched to its length): does the mask make a difference, and which way?

For each run: the final epoch's test Spearman rho, its gain over the exemplar means with a 95 %
paired bootstrap interval over the test clips, its differences from the ridge probe and from the
gtm run on the same clips (paired intervals), the Spearman rho of the predicted offset
(predicted - exemplar mean) against the true one, and seconds per epoch and in all. All runs of
a seed share one frozen-prefix cache (computed once). Prints one table; writes
``<work>/learning.json``.

``--train-clips N`` trains on N random clips of the training split and judges on the same test
clips (runs in ``seedS/runs-trainN``, rows labelled ``S-trainN``): how much the training set's
size matters, side by side. The defaults (600 clips, 10 epochs) replaced 300 clips x 0.55
(135 training clips) x 20 epochs: on seed 4's 180 test clips the gtm run's rho rose from 0.368
(135 training clips, 20 epochs) to 0.520 (420 clips, 10 epochs), +0.152 [0.041, 0.275] paired,
its offset rho from 0.283 to 0.432 (SPEC.md, "The learning benchmark").

The small config runs without its SVE by default (``--sve`` keeps it): on seed 1 the from-scratch
SVE changed nothing measurable (rho 0.446 with it, 0.454 without: SPEC.md) while it costs ~60 %
of a training step on the CPU (profiled with py-spy), so the benchmark measures the masks' effect
on everything else of the model at ~2.5x the speed.

``--cache-views K`` caches K augmented views per training clip instead of 2 (runs in
``seedS/runs-viewsK``, rows ``S-viewsK``; the ridge probe is reused): 4 views changed nothing
measurable on seeds 4-6 (SPEC.md, "More augmented views").

``--ema-epochs H``: the weights' moving average in epochs (default 0 = off, as in training;
runs in ``seedS/runs-emaH``, rows ``S-emaH``); each run with an average adds
rho(average) - rho(raw weights) of the same run, paired (column ``vs raw``): +0.031, +0.029,
-0.006 on seeds 4-6, -0.090 on seed 7 (SPEC.md, "A moving average of the weights").

``--backbone-frozen-epochs K``: the heads train alone on the frozen I3D for the first K epochs,
then everything is fine-tuned (runs in ``seedS/runs-frozenK``, rows ``S-frozenK``): K = 3 moved
rho by -0.044, +0.094, -0.036, +0.017 on seeds 4-7 (SPEC.md, "Heads first on the frozen
backbone").

``--feature-dropout P``: dropout on the snippet features X^F instead of the small config's 0
(runs in ``seedS/runs-dropP``, rows ``S-dropP``): P = 0.5 moved rho by -0.038, +0.093, -0.028,
-0.046 on seeds 4-7, -0.005 [-0.045, +0.034] on average (SPEC.md, "Dropout on X^F").

Usage: python benchmarks/learning.py [--seeds 4 5 6] [--videos 600] [--test-share 0.3]
       [--epochs 10] [--train-clips N] [--cache-views K] [--ema-epochs H]
       [--backbone-frozen-epochs K] [--feature-dropout P]
       [--variants gtm pm nomask shuffled] [--sve] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_probe import encode, ridge  # noqa: E402

from hmtools.annotation.pseudo_mask import run_pseudo_mask  # noqa: E402
from hmtools.annotation.segmenters import default_weight_free, make_segmenter  # noqa: E402
from hmtools.datasets.synth import generate  # noqa: E402
from hmtools.engine import TrainConfig, train  # noqa: E402
from hmtools.engine.cache import DEFAULT_VIEWS  # noqa: E402
from hmtools.engine.evaluate import rho_interval  # noqa: E402
from hmtools.engine.train import load_data  # noqa: E402
from hmtools.fsutil import atomic_write_text, staged_dir  # noqa: E402
from hmtools.masks import LayerData, MaskStore, StoreWriter, merge_stores  # noqa: E402
from hmtools.models.build import build_model  # noqa: E402
from hmtools.models.weights import KINETICS400  # noqa: E402
from hmtools.safe_pickle import load_pickle  # noqa: E402

VARIANTS = {
    "gtm": dict(masks="gtm"),
    "pm": dict(masks="pm"),
    "nomask": dict(masks="gtm", model_overrides={"use_mask_loss": False}),
    "shuffled": dict(masks="shuffled"),
}


def prepare(
    root: Path, videos: int, seed: int, test_share: float, height: int, need_pm: bool = True
) -> Path:
    """The dataset, its pseudo masks (only when ``need_pm``: they take ~25 min for 300 clips on
    one core) and a store with gtm, shuffled and pm layers (reused)."""
    store = root / "masks.h5"
    if store.exists():
        with MaskStore(store) as st:
            has_pm = any("pm" in i.layers for i in st.videos())
        if has_pm or not need_pm:
            return store
        store.unlink()
    if not (root / "Synth-HM.h5").exists():
        generate(root, videos, seed, height=height, test_share=test_share, progress=False)
    pm = root / "pm.h5"
    if need_pm and not pm.exists():
        t0 = time.perf_counter()
        run_pseudo_mask(
            root / "frames",
            pm,
            make_segmenter(default_weight_free()),
            dataset="finediving",
            annotations=root / "Annotations",
            resume=(root / "pm.h5.parts").exists(),
            progress=False,
        )
        print(f"  seed {seed}: pseudo masks in {time.perf_counter() - t0:.0f} s", flush=True)
    both = root / "both.h5"
    inputs = [root / "Synth-HM.h5", *([pm] if pm.exists() else [])]
    merge_stores(inputs, both, overwrite=True, progress=False)
    rng = np.random.default_rng(seed)
    with MaskStore(both) as src, StoreWriter(store, name="learning") as w:
        infos = [i for i in src.videos() if "gtm" in i.layers]
        perm = rng.permutation(len(infos))
        while len(infos) > 1 and np.any(perm == np.arange(len(infos))):  # nobody keeps its own
            perm = rng.permutation(len(infos))
        for k, info in enumerate(infos):
            w.add_video(
                info.video_id,
                height=info.height,
                width=info.width,
                num_frames=info.num_frames,
                action_type=info.action_type,
                **info.attrs,
            )
            for layer in info.layers:
                w.write_layer(info.video_id, layer, src.read_layer(info.video_id, layer))
            other = src.read_layer(infos[perm[k]].video_id, "gtm")
            own = src.read_layer(info.video_id, "gtm").frame_index
            pick = np.round(np.linspace(0, len(other) - 1, len(own))).astype(int)
            masks = other.decode(info.height, info.width)[pick]
            w.write_layer(info.video_id, "shuffled", LayerData.from_masks(own, masks, None, 3))
    return store


def train_subset(root: Path, clips: int | None, seed: int) -> Path:
    """The annotations with the training split cut to ``clips`` random training clips (the test
    split untouched: runs on the full and the cut training set are judged on the same clips);
    ``None``: the dataset's own annotations."""
    if clips is None:
        return root / "Annotations"
    ann = root / f"Annotations-train{clips}"
    if ann.exists():
        return ann
    keys = load_pickle(root / "Annotations" / "train_split.pkl")
    if clips > len(keys):
        raise SystemExit(f"--train-clips {clips}: the training split has {len(keys)} clips")
    keep = np.sort(np.random.default_rng(seed).permutation(len(keys))[:clips])
    with staged_dir(ann) as stage:
        shutil.copytree(root / "Annotations", stage, dirs_exist_ok=True)
        (stage / "train_split.pkl").write_bytes(pickle.dumps([keys[i] for i in keep]))
    return ann


def ridge_file(root: Path, annotations: Path) -> Path:
    return root / f"ridge-{annotations.name}.csv"


def ridge_probe(root: Path, annotations: Path) -> dict:
    """Exemplar mean + ridge on the frozen Kinetics Stage-4 features (centre crops); its test
    predictions go to ``ridge-<annotations>.csv`` for the paired comparison with each run."""
    model, _ = build_model("small", i3d_weights=KINETICS400, use_sve=False)
    model.eval()
    cfg = TrainConfig(
        dataset="finediving",
        data_root=str(root / "frames"),
        annotations=str(annotations),
        masks_file=str(root / "Synth-HM.h5"),
        model="small",
    )
    data = load_data(cfg, model)
    f_tr = encode(model, data.train, data.clip_cfg, root / "Synth-HM.h5")[0]
    f_te = encode(model, data.test, data.clip_cfg, root / "Synth-HM.h5")[0]
    by_type: dict[str, list[float]] = {}
    for s in data.train:
        by_type.setdefault(s.action_type, []).append(s.final_score)
    base_te = np.array([np.mean(by_type[s.action_type]) for s in data.test])
    base_tr = np.array([np.mean(by_type[s.action_type]) for s in data.train])
    y_tr = np.array([s.final_score for s in data.train])
    y_te = np.array([s.final_score for s in data.test])
    off = ridge(f_tr, y_tr - base_tr, f_te)
    pred = base_te + off
    table = pd.DataFrame(
        {
            "video": [s.name for s in data.test],
            "true": y_te,
            "predicted": pred,
            "exemplar_mean": base_te,
        }
    )
    atomic_write_text(ridge_file(root, annotations), table.to_csv(index=False))
    g = rho_interval(y_te, pred, base_te)
    return {
        "train": len(data.train),
        "test": len(data.test),
        "rho": float(spearmanr(y_te, pred).statistic),
        "exemplar_mean_rho": float(spearmanr(y_te, base_te).statistic),
        "gain": g["estimate"],
        "gain_ci": g["ci"],
        "offset_rho": float(spearmanr(y_te - base_te, off).statistic),
    }


def run_variant(
    root: Path,
    store: Path,
    name: str,
    epochs: int,
    prefixes: dict,
    sve: bool = False,
    annotations: Path | None = None,
    runs: str = "runs",
    views: int = DEFAULT_VIEWS,
    ema_epochs: float = 0.0,
    backbone_frozen_epochs: int = 0,
    feature_dropout: float | None = None,
) -> dict:
    out = root / runs / name
    spec = dict(VARIANTS[name])
    spec["model_overrides"] = {**spec.get("model_overrides", {}), "use_sve": sve}
    if feature_dropout is not None:  # else the small config's own
        spec["model_overrides"]["feature_dropout"] = feature_dropout
    cfg = TrainConfig(
        dataset="finediving",
        data_root=str(root / "frames"),
        annotations=str(annotations or root / "Annotations"),
        masks_file=str(store),
        model="small",
        epochs=epochs,
        warmup_epochs=1,
        lr=3e-4,
        workers=0,
        eval_every=epochs,  # judged on the final epoch only (no selection on the test set)
        cache_views=views,
        ema_epochs=ema_epochs,
        backbone_frozen_epochs=backbone_frozen_epochs,
        out=str(out),
        **spec,
    )
    t0 = time.perf_counter()
    res = train(cfg, progress=False, resume=(out / "last.pt").exists(), prefix_store=prefixes)
    total = time.perf_counter() - t0
    p = pd.read_csv(out / "predictions_last.csv")
    t, y, b = p["true"].to_numpy(), p["predicted"].to_numpy(), p["exemplar_mean"].to_numpy()
    g = rho_interval(t, y, b)
    secs = [h["seconds"] for h in res.history]
    row = {
        "rho": float(spearmanr(t, y).statistic),
        "exemplar_mean_rho": float(spearmanr(t, b).statistic),
        "gain": g["estimate"],
        "gain_ci": g["ci"],
        "offset_rho": float(spearmanr(t - b, y - b).statistic),
        "offset_std": float((y - b).std()),
        "seconds_per_epoch": float(np.median(secs)),
        "first_epoch_seconds": float(secs[0]),
        "seconds": total,
    }
    raw = out / "predictions_last_raw.csv"  # with a weight average: the raw weights, same run
    if raw.exists():
        row["vs_raw"] = paired(out / "predictions_last.csv", raw)
    return row


def paired(a: Path, b: Path) -> dict | None:
    """rho(a) - rho(b) on the same test clips with a 95 % paired bootstrap interval, from two
    saved prediction files (``None`` until both exist)."""
    if not (a.exists() and b.exists()):
        return None
    m = pd.read_csv(a).merge(pd.read_csv(b), on="video", suffixes=("", "_b"))
    g = rho_interval(m["true"].to_numpy(), m["predicted"].to_numpy(), m["predicted_b"].to_numpy())
    return {"estimate": g["estimate"], "ci": g["ci"], "videos": len(m)}


def versus_gtm(root: Path, name: str, runs: str = "runs") -> dict | None:
    """rho(variant) - rho(gtm): does the mask make a difference, which way?"""
    if name == "gtm":
        return None
    return paired(
        root / runs / name / "predictions_last.csv", root / runs / "gtm" / "predictions_last.csv"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--videos", type=int, default=600)
    ap.add_argument("--test-share", type=float, default=0.3)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--train-clips",
        type=int,
        default=None,
        help="train on this many random clips of the training split (same test clips)",
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument(
        "--cache-views",
        type=int,
        default=DEFAULT_VIEWS,
        help=f"augmented views cached per training clip (runs in runs-viewsK, rows S-viewsK "
        f"unless {DEFAULT_VIEWS})",
    )
    ap.add_argument(
        "--ema-epochs",
        type=float,
        default=0.0,
        help="the weights' moving average in epochs, 0 = off (runs in runs-emaH, rows S-emaH)",
    )
    ap.add_argument(
        "--backbone-frozen-epochs",
        type=int,
        default=0,
        help="first epochs training the heads alone on the frozen I3D (runs in runs-frozenK)",
    )
    ap.add_argument(
        "--feature-dropout",
        type=float,
        default=None,
        help="dropout on X^F instead of the small config's (runs in runs-dropP, rows S-dropP)",
    )
    ap.add_argument("--sve", action="store_true", help="keep the small config's SVE")
    ap.add_argument("--work", type=Path, default=Path("learning-bench"))
    args = ap.parse_args()
    results: dict = {}
    out_json = args.work / "learning.json"
    if out_json.exists():
        results = json.loads(out_json.read_text())

    def save() -> None:
        atomic_write_text(out_json, json.dumps(results, indent=2))

    subset = f"-train{args.train_clips}" if args.train_clips is not None else ""
    cut = subset + (f"-views{args.cache_views}" if args.cache_views != DEFAULT_VIEWS else "")
    cut += f"-ema{args.ema_epochs:g}" if args.ema_epochs else ""
    frozen = args.backbone_frozen_epochs
    cut += f"-frozen{frozen}" if frozen else ""
    drop = args.feature_dropout
    cut += f"-drop{drop:g}" if drop is not None else ""
    labels = [f"{seed}{cut}" for seed in args.seeds]
    for seed, label in zip(args.seeds, labels, strict=True):
        root = args.work / f"seed{seed}"
        root.mkdir(parents=True, exist_ok=True)
        store = prepare(
            root, args.videos, seed, args.test_share, args.height, need_pm="pm" in args.variants
        )
        ann = train_subset(root, args.train_clips, seed)
        runs = f"runs{cut}"
        r = results.setdefault(label, {})
        # the views and the average change no probe: such a run reuses its seed's (and subset's)
        r["ridge"] = r.get("ridge") or results.get(f"{seed}{subset}", {}).get("ridge")
        if not r["ridge"] or not ridge_file(root, ann).exists():
            r["ridge"] = ridge_probe(root, ann)
            save()
        prefixes: dict = {}
        for v in args.variants:
            if v not in r:
                r[v] = run_variant(
                    root,
                    store,
                    v,
                    args.epochs,
                    prefixes,
                    args.sve,
                    annotations=ann,
                    runs=runs,
                    views=args.cache_views,
                    ema_epochs=args.ema_epochs,
                    backbone_frozen_epochs=frozen,
                    feature_dropout=drop,
                )
                r[v].update(
                    sve=args.sve,
                    epochs=args.epochs,
                    views=args.cache_views,
                    ema=args.ema_epochs,
                    frozen=frozen,
                    feature_dropout=drop,
                )
                save()
            print(f"  seed {label} {v}: {json.dumps(r[v])}", flush=True)
        for v in args.variants:  # once every run of the seed is there, gtm's included
            if "vs_gtm" not in r[v] and (d := versus_gtm(root, v, runs)):
                r[v]["vs_gtm"] = d
                save()
            pred = root / runs / v / "predictions_last.csv"
            if "vs_ridge" not in r[v] and (d := paired(pred, ridge_file(root, ann))):
                r[v]["vs_ridge"] = d
                save()
    print()
    print(
        f"{'seed':>10} {'run':<9} {'train/test':>10} {'rho':>6} {'ex.mean':>7} "
        f"{'gain [95 %]':>22} {'offset rho':>10} {'s/epoch':>8} {'total s':>8} "
        f"{'rho - rho(ridge) [95 %]':>24} {'rho - rho(gtm) [95 %]':>24}"
        + (f" {'vs raw [95 %]':>24}" if args.ema_epochs else "")
    )
    for label in labels:
        r = results[label]
        rid = r["ridge"]
        for name in ["ridge", *args.variants]:
            m = r[name]
            lo, hi = m["gain_ci"]
            tt = f"{rid['train']}/{rid['test']}" if name == "ridge" else ""
            secs = (
                f"{m['seconds_per_epoch']:8.1f} {m['seconds']:8.0f}"
                if "seconds" in m
                else f"{'':>8} {'':>8}"
            )
            vs_txt = "".join(
                f" {vs['estimate']:+7.3f} [{vs['ci'][0]:+.3f}, {vs['ci'][1]:+.3f}]"
                if (vs := m.get(k))
                else f" {'':>24}"
                for k in ("vs_ridge", "vs_gtm", *(["vs_raw"] if args.ema_epochs else []))
            ).rstrip()
            print(
                f"{label:>10} {name:<9} {tt:>10} {m['rho']:6.3f} {m['exemplar_mean_rho']:7.3f} "
                f"{m['gain']:+7.3f} [{lo:+.3f}, {hi:+.3f}] {m['offset_rho']:10.3f} {secs}{vs_txt}"
            )
    print(f"\nwritten: {out_json}")


if __name__ == "__main__":
    main()
