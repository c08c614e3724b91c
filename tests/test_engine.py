from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.engine import TrainConfig, evaluate_run, train
from hmtools.engine.experiment import gtm_vs_pm
from hmtools.errors import HMError, InputError
from hmtools.masks import MaskStore, StoreWriter
from tests.conftest import (
    hmtools_under_torchrun,
    needs_kinetics,
    store_with_pm,
    synth_train_config,
)

REPO = Path(__file__).resolve().parents[1]


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    """The plumbing tests' run: the tiny config from scratch, 2 short epochs."""
    base: dict = dict(
        model="tiny",
        epochs=2,
        warmup_epochs=1,
        workers=0,
        seed=7,
        voters=3,
        accum=1,
        i3d_weights="none",
    )
    base.update(kw)
    return synth_train_config(root, out, **base)


@pytest.mark.slow
def test_resume_continues_like_an_uninterrupted_run(synth_small, tmp_path):
    full = train(_cfg(synth_small, tmp_path / "a", epochs=3), progress=False)
    train(_cfg(synth_small, tmp_path / "b", epochs=1), progress=False)  # "killed" after epoch 1
    resumed = train(_cfg(synth_small, tmp_path / "b", epochs=3), resume=True, progress=False)
    la = [h["train_loss"] for h in full.history]
    lb = [h["train_loss"] for h in resumed.history]
    assert len(la) == len(lb) == 3
    np.testing.assert_allclose(la, lb, atol=1e-4, rtol=0)
    sa = pd.read_csv(tmp_path / "a" / "steps.csv")
    sb = pd.read_csv(tmp_path / "b" / "steps.csv")
    np.testing.assert_allclose(sa["loss"], sb["loss"], atol=1e-4, rtol=0)
    for f in ("last.pt", "best.pt", "metrics.csv", "learning_curve.png", "predictions_best.csv"):
        assert (tmp_path / "b" / f).exists(), f
    m = pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert list(m["epoch"]) == [1, 2, 3] and "test_spearman_rho" in m.columns
    assert cv2.imread(str(tmp_path / "b" / "learning_curve.png")).std() > 5
    with pytest.raises(InputError, match="already holds a run"):
        train(_cfg(synth_small, tmp_path / "b"), progress=False)


@pytest.mark.slow
def test_weight_average_is_scored_kept_and_resumed(synth_small, tmp_path):
    """--ema-epochs: the average is what is evaluated and kept in best.pt (hmtools eval reads
    it), the final epoch scores the raw weights too, and a resumed run continues the average."""
    full = train(_cfg(synth_small, tmp_path / "a", epochs=3, ema_epochs=1.0), progress=False)
    m = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert m["test_raw_spearman_rho"].notna().tolist() == [False, False, True]
    ema = pd.read_csv(tmp_path / "a" / "predictions_last.csv")
    raw = pd.read_csv(tmp_path / "a" / "predictions_last_raw.csv")
    assert (ema["predicted"] - raw["predicted"]).abs().max() > 1e-4  # not the raw weights
    last = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert last["ema"]["steps"] == sum(h["steps"] for h in full.history)
    res = evaluate_run(tmp_path / "a", checkpoint="last.pt")
    np.testing.assert_allclose(res.predictions["predicted"], ema["predicted"], atol=1e-5)
    train(_cfg(synth_small, tmp_path / "b", epochs=1, ema_epochs=3.0), progress=False)
    train(_cfg(synth_small, tmp_path / "b", epochs=3, ema_epochs=3.0), resume=True, progress=False)
    train(_cfg(synth_small, tmp_path / "c", epochs=3, ema_epochs=3.0), progress=False)
    b, c = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "bc")

    def gap(x: dict, y: dict) -> float:
        return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)

    # the resumed average is the uninterrupted one up to float-level differences; a restarted
    # one would be off by a good part of the average's distance from the raw weights
    assert gap(b["ema"]["model"], c["ema"]["model"]) < 0.05 * gap(c["ema"]["model"], c["model"])


@pytest.mark.slow
def test_backbone_frozen_epochs_train_the_heads_alone(synth_small, tmp_path, monkeypatch):
    """--backbone-frozen-epochs K: the I3D's weights stay the initial ones for K epochs while the
    heads train; a resume past K fine-tunes them (the schedule is rebuilt from the run's config)."""
    engine = sys.modules["hmtools.engine.train"]  # the module (hmtools.engine.train: the function)
    start: dict = {}
    setup = engine._setup

    def snapshot(*a, **kw):
        run = setup(*a, **kw)
        ps = run.model.named_parameters()
        start.update({k: v.detach().clone() for k, v in ps if v.requires_grad})
        return run

    monkeypatch.setattr(engine, "_setup", snapshot)
    out = tmp_path / "a"
    train(_cfg(synth_small, out, epochs=2, backbone_frozen_epochs=2), progress=False)
    trained = {k for k in start if k.startswith("i3d.")}
    assert trained, "the tiny config trains its I3D"

    def moved() -> tuple[set, set]:
        w = torch.load(out / "last.pt", weights_only=True)["model"]
        changed = {k for k in start if not torch.equal(w[k], start[k])}
        return changed & trained, changed - trained

    i3d, heads = moved()
    assert not i3d and heads
    m = pd.read_csv(out / "metrics.csv")
    assert m["lr_backbone"].tolist() == [0, 0] and (m["lr"] > 0).all()
    w = torch.load(out / "last.pt", weights_only=True)["model"]
    start.update({k: w[k] for k in start})
    train(_cfg(synth_small, out, epochs=3, backbone_frozen_epochs=2), resume=True, progress=False)
    i3d, heads = moved()
    assert i3d == trained and heads
    m = pd.read_csv(out / "metrics.csv")
    # the extended run's schedule sets epoch 3's rates (the saved ones: the 2-epoch cosine's 0)
    assert m["lr_backbone"].iloc[-1] > 0 and m["lr"].iloc[-1] > 0


@pytest.mark.slow
@needs_kinetics
def test_prefix_cache_trains_like_the_uncached_model(synth_small, tmp_path):
    """The small config with its frozen Kinetics prefix cached (2 views) makes the same steps and
    the same test predictions as recomputing every clip, and resumes after a kill."""
    kw = dict(model="small", i3d_weights="kinetics400", epochs=2, batch_size=2, voters=2)
    store: dict = {}
    cached = train(
        _cfg(synth_small, tmp_path / "c", cache_views=2, **kw), progress=False, prefix_store=store
    )
    before = set(store)  # the views the 2 epochs used + the test-time clips
    assert any(k[0] for k in before) and any(not k[0] for k in before)
    plain = train(_cfg(synth_small, tmp_path / "p", cache_views=0, **kw), progress=False)
    sc = pd.read_csv(tmp_path / "c" / "steps.csv")
    sp = pd.read_csv(tmp_path / "p" / "steps.csv")
    assert len(sc) == len(sp) >= 4
    # float-level differences (the prefix computed clip by clip vs in the batch) grow with the
    # steps: 1e-6 after one step, ~1e-4 relative after four; a wrong cache differs by far more
    for k in ("loss", "loss_a", "loss_t", "loss_e"):
        np.testing.assert_allclose(sc[k], sp[k], atol=1e-4, rtol=1e-3)
    assert cached.best["test_spearman_rho"] == pytest.approx(plain.best["test_spearman_rho"])
    pc = pd.read_csv(tmp_path / "c" / "predictions_best.csv")
    pp = pd.read_csv(tmp_path / "p" / "predictions_best.csv")
    np.testing.assert_allclose(pc["predicted"], pp["predicted"], atol=1e-3)
    # epoch 3 reuses view 0; a resumed run rebuilds its cache, here from the shared store (as
    # the pm run of `hmtools experiment` reuses the gtm run's prefixes): nothing is recomputed
    more = {**kw, "epochs": 3}
    train(
        _cfg(synth_small, tmp_path / "c", cache_views=2, **more),
        resume=True,
        progress=False,
        prefix_store=store,
    )
    new = set(store) - before  # only view-0 clips that epoch 1 did not draw (drop_last)
    assert all(k[0] and k[2] == 0 for k in new) and len(new) <= 2
    assert len(pd.read_csv(tmp_path / "c" / "steps.csv")) == len(sp) * 3 // 2
    with pytest.raises(InputError, match="frozen"):
        train(_cfg(synth_small, tmp_path / "t", cache_views=2), progress=False)


def test_eval_cli_and_selection_guard(synth_small, tmp_path):
    train(_cfg(synth_small, tmp_path / "r", epochs=1), progress=False)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "r"), "--exemplars", "2"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output[r.output.index("{") :])
    assert set(metrics) == {
        "test_spearman_rho",
        "test_rl2_x100",
        "test_aiou_50",
        "test_aiou_75",
        "test_exemplar_mean_rho",
    }
    pred = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert list(pred.columns)[:4] == ["video", "action_type", "true", "predicted"]
    assert (pred["exemplars"] <= 2).all() and "spread_std" in pred.columns
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "r"), "--selection", "dd"])
    assert r.exit_code == 1 and "--selection an" in r.output
    (tmp_path / "r" / "best.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"best.pt: corrupt or unreadable checkpoint"):
        evaluate_run(tmp_path / "r")


def test_bad_inputs_stop_before_training(synth_small, tmp_path):
    with pytest.raises(InputError, match="no 'pm' layer"):
        train(_cfg(synth_small, tmp_path / "x", masks="pm"), progress=False)
    holes = tmp_path / "holes.h5"
    with MaskStore(synth_small / "Synth-HM.h5") as src, StoreWriter(holes) as w:
        for info, d in src.iter_layer("gtm"):
            w.add_video(info.video_id, height=info.height, width=info.width)
            w.write_layer(info.video_id, "gtm", d.take(np.arange(0, len(d), 2)))
    with pytest.raises(InputError, match="has no 'gtm' mask for frame"):
        train(_cfg(synth_small, tmp_path / "y", masks_file=str(holes)), progress=False)
    assert not (tmp_path / "y" / "last.pt").exists()
    with pytest.raises(InputError, match="nothing to resume"):
        train(_cfg(synth_small, tmp_path / "z"), resume=True, progress=False)


def test_nan_loss_names_step_and_videos(synth_small, tmp_path, monkeypatch):
    import hmtools.models.uni_fineparser as ufp

    monkeypatch.setattr(ufp, "score_loss", lambda p, t: (p - t).mean() * float("nan"))
    with pytest.raises(HMError, match=r"non-finite loss at epoch 1 step 1 \(videos \["):
        train(_cfg(synth_small, tmp_path / "n"), progress=False)


@pytest.mark.slow
def test_ddp_two_processes_match_one(synth_small, tmp_path):
    # the SVE's batch-statistics BatchNorm is per process on CPU (SyncBatchNorm needs GPUs):
    # frozen, a DDP step must equal one process with the global batch exactly
    yaml_cfg = tmp_path / "tiny_frozen_bn.yaml"
    yaml_cfg.write_text("base: tiny\nsve_bn: frozen\n")
    common = [
        "--dataset",
        "finediving",
        "--data-root",
        str(synth_small / "frames"),
        "--annotations",
        str(synth_small / "Annotations"),
        "--masks-file",
        str(synth_small / "Synth-HM.h5"),
        "--config",
        str(yaml_cfg),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--accum",
        "1",
        "--workers",
        "0",
        "--seed",
        "3",
        "--voters",
        "2",
        "--i3d-weights",
        "none",
        "-q",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "hmtools.cli", "train", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            *hmtools_under_torchrun(2, 29500),
            "train",
            *common,
            "--out",
            str(tmp_path / "two"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = pd.read_csv(tmp_path / "one" / "steps.csv")
    b = pd.read_csv(tmp_path / "two" / "steps.csv")
    assert len(a) == len(b) >= 2
    np.testing.assert_allclose(a["loss"], b["loss"], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_experiment_gtm_vs_pm_report(synth_small, tmp_path):
    store = store_with_pm(synth_small, tmp_path / "both.h5")
    cfg = _cfg(synth_small, tmp_path / "exp" / "gtm", masks_file=str(store), epochs=2)
    rep = gtm_vs_pm(cfg, tmp_path / "exp", progress=False)
    data = json.loads((tmp_path / "exp" / "report.json").read_text())
    for layer in ("gtm", "pm"):
        assert set(data[layer]) >= {"test_spearman_rho", "test_rl2_x100"}
        assert -1 <= data[layer]["test_spearman_rho"] <= 1 and data[layer]["test_rl2_x100"] >= 0
    assert 0.2 < data["mask_iou_pm_vs_gtm"] < 0.999 and data == json.loads(json.dumps(rep))
    # bootstrap intervals over the test videos, from the final epoch's predictions
    preds = pd.read_csv(tmp_path / "exp" / "gtm" / "predictions_last.csv")
    for layer in ("gtm", "pm"):
        lo, hi = data[layer]["test_spearman_rho_ci95"]
        assert -1 <= lo < hi <= 1
        gain = data[layer]["gain_over_exemplar_mean_rho"]
        assert gain == pytest.approx(
            data[layer]["test_spearman_rho"] - data[layer]["test_exemplar_mean_rho"], abs=1e-9
        )
        assert (
            data[layer]["gain_over_exemplar_mean_ci95"][0]
            <= data[layer]["gain_over_exemplar_mean_ci95"][1]
        )
    d = data["gtm_minus_pm_rho"]
    assert d["test_videos"] == len(preds) and d["ci95"][0] <= d["ci95"][1]
    assert d["estimate"] == pytest.approx(
        data["gtm"]["test_spearman_rho"] - data["pm"]["test_spearman_rho"], abs=1e-9
    )
    assert 0 <= d["share_of_resamples_gtm_better"] <= 1
    md = (tmp_path / "exp" / "report.md").read_text()
    assert "95 % paired bootstrap interval" in md and f"{d['estimate']:.3f}" in md
    assert "| GTM (ground truth) |" in md and "| PM (pseudo) |" in md
    assert f"{data['mask_iou_pm_vs_gtm']:.4f}" in md
    assert cv2.imread(str(tmp_path / "exp" / "report.png")).std() > 5
    # both runs saw the same pairs: identical step count, different L_A targets
    sa = pd.read_csv(tmp_path / "exp" / "gtm" / "steps.csv")
    sp = pd.read_csv(tmp_path / "exp" / "pm" / "steps.csv")
    assert len(sa) == len(sp) and not np.allclose(sa["loss_a"], sp["loss_a"])
    torch.manual_seed(0)


_CACHE_RSS = """
import os, sys
import hmtools.engine.cache as cache
from hmtools.datasets.clips import ClipDataset
from hmtools.engine.train import load_data
from hmtools.models.build import build_model
from tests.conftest import synth_train_config
from pathlib import Path

if sys.argv[2] == "off":
    cache._LIBC = None
root = Path(sys.argv[1])
model, _ = build_model("small", use_sve=False)
data = load_data(synth_train_config(root, root / "unused", model="small"), model)
clips = ClipDataset(data.train, data.clip_cfg, train=True)
views = 6
c = cache.PrefixCache(model, clips, views, "cpu")
rss = lambda: int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
c.item(0, 0)  # first use: the model's own buffers settle
start, kept = rss(), 0
for v in range(views):
    for i in range(len(clips)):
        if (i, v) != (0, 0):
            p = c.item(i, v)["prefix"].features
            kept += p.numel() * p.element_size()  # its row (the slab is shared)
print((rss() - start) / kept)
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "aarch64"),
    reason="measures Linux RSS under glibc",
)
def test_prefix_cache_memory_is_the_prefixes(synth_small):
    """Cached prefixes cost about their own bytes: the process grows by at most 2x what the cache
    keeps (under glibc's default allocator it grew ~12x: the clips' freed frames and activations
    stayed pinned in the heap, hmtools.engine.cache)."""
    out = subprocess.run(
        [sys.executable, "-c", _CACHE_RSS, str(synth_small), "on"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert ratio < 2.0, f"the process grew {ratio:.1f}x the cached bytes"
