"""Bad input that used to go in silently (issue 27): damaged JPEGs, impossible prompts, training
that never steps, clips with missing frames, resumes with other settings, file modes, and the
smaller cases. Every damaged input is built here."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.engine import TrainConfig, train
from hmtools.errors import InputError
from hmtools.masks import LayerData, MaskStore, StoreWriter, merge_stores, pack_folder, unpack_png
from hmtools.masks.store import write_layer_group
from hmtools.masks.validate import validate_store
from tests.conftest import synth_train_config


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _scramble(path: Path, n: int = 40) -> None:
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))


def _jpeg_masks(root: Path, videos: int = 2, frames: int = 5) -> None:
    for v in range(videos):
        d = root / f"v{v}"
        d.mkdir(parents=True)
        for t in range(frames):
            m = np.zeros((256, 455), np.uint8)
            cv2.circle(m, (100 + 20 * t, 128), 60, 255, -1)
            cv2.imwrite(str(d / f"{t:05d}.jpg"), m)


def test_a_scrambled_jpeg_mask_stops_pack_naming_the_file(tmp_path):
    _jpeg_masks(tmp_path / "m")
    bad = tmp_path / "m" / "v1" / "00002.jpg"
    _scramble(bad)
    out = tmp_path / "s.h5"
    r = _cli("pack", tmp_path / "m", "--layout", "folder", "--out", out, "-q")
    assert r.exit_code == 1 and str(bad) in r.output and "damaged JPEG" in r.output, r.output
    assert not out.exists()
    r = _cli("pack", tmp_path / "m", "--layout", "folder", "--out", out, "--skip-bad", "-q")
    assert r.exit_code == 0, r.output
    assert "v1" in r.output and "00002.jpg" in r.output
    with MaskStore(out) as s:
        assert s.video_ids() == [("v0",)]


def test_a_jpeg_frame_cut_in_half_fails_its_video_in_pseudo_mask(tmp_path):
    root = tmp_path / "videos"
    for name in ("good", "cut"):
        d = root / name
        d.mkdir(parents=True)
        for t in range(6):
            f = np.full((64, 96, 3), 90, np.uint8)
            cv2.circle(f, (20 + 5 * t, 32), 8, (0, 0, 255), -1)
            cv2.imwrite(str(d / f"{t:05d}.jpg"), f)
    cut = root / "cut" / "00004.jpg"
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    out = tmp_path / "pm.h5"
    r = _cli("pseudo-mask", root, "--out", out, "--segmenter", "background", "-q")
    assert r.exit_code == 3, r.output  # some videos failed (exit codes: README)
    fails = (tmp_path / "pm.failures.csv").read_text()
    assert "cut" in fails and "00004.jpg" in fails
    with MaskStore(out) as s:
        assert s.video_ids() == [("good",)]


def test_impossible_prompt_boxes_are_refused_and_unknown_keys_warned(tmp_path, caplog):
    root = tmp_path / "videos"
    for name in ("a", "b"):
        d = root / name
        d.mkdir(parents=True)
        for t in range(4):
            cv2.imwrite(str(d / f"{t:05d}.jpg"), np.full((48, 64, 3), 80 + 10 * t, np.uint8))
    p = tmp_path / "p.json"
    for box in ([10, 10, 0, 5], [10, 10, 8, -3]):
        p.write_text(json.dumps({"a": box}))
        r = _cli("pseudo-mask", root, "--out", tmp_path / "x.h5", "--prompts", p, "-q")
        assert r.exit_code == 1 and "video a" in r.output and "zero or negative" in r.output
    p.write_text(json.dumps({"a": [500, 400, 20, 20], "b": [4, 4, 20, 20], "../../etc/x": [1] * 4}))
    with caplog.at_level(logging.WARNING):
        r = _cli("pseudo-mask", root, "--out", tmp_path / "y.h5", "--prompts", p, "-q")
    assert r.exit_code == 3, r.output
    assert "lies outside the 64x48 frame" in (tmp_path / "y.failures.csv").read_text()
    assert "'../../etc/x'" in caplog.text and "match no video" in caplog.text


def _copy_dataset(src: Path, dst: Path, train_keys: int | None = None) -> Path:
    shutil.copytree(src, dst)
    if train_keys is not None:
        f = dst / "Annotations" / "train_split.pkl"
        keys = pickle.loads(f.read_bytes())
        f.write_bytes(pickle.dumps(list(keys)[:train_keys]))
    return dst


def _tiny(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model="tiny", epochs=2, warmup_epochs=1, workers=0, voters=2, i3d_weights="none")
    base.update(kw)
    return synth_train_config(root, out, **base)


def test_training_steps_on_the_remainder_and_refuses_data_that_cannot_step(synth_small, tmp_path):
    root = _copy_dataset(synth_small, tmp_path / "d", train_keys=2)
    cfg = _tiny(root, tmp_path / "run", batch_size=2, accum=2)  # one batch per epoch, accum 2
    from hmtools.models import build_model

    init = build_model("tiny")[0].state_dict()
    torch.manual_seed(cfg.seed)
    res = train(cfg, progress=False)
    assert [h["steps"] for h in res.history] == [1, 1]
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    changed = [k for k in init if not torch.equal(init[k], after[k])]
    assert changed, "no weight moved"
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["epoch"] in (1, 2) and best["test_spearman_rho"] != -2.0
    r = _cli("eval", tmp_path / "run", "--exemplars", "2")
    assert r.exit_code == 0, r.output
    one = _copy_dataset(synth_small, tmp_path / "d1", train_keys=1)
    with pytest.raises(InputError, match="1 training clips make no batch of 2 pairs"):
        train(_tiny(one, tmp_path / "run1", batch_size=2), progress=False)
    assert not (tmp_path / "run1" / "best.json").exists()
    assert not (tmp_path / "run1" / "last.pt").exists()


def test_a_clip_with_missing_frames_stops_training_before_it_starts(synth_small, tmp_path):
    root = _copy_dataset(synth_small, tmp_path / "d")
    folder = sorted(p for p in (root / "frames").glob("*/*") if p.is_dir())[0]
    files = sorted(folder.glob("*.jpg"))
    for f in files[len(files) // 4 : 3 * len(files) // 4]:
        f.unlink()
    with pytest.raises(InputError, match=rf"{folder.parent.name}/{folder.name} \((train|test)\)"):
        train(_tiny(root, tmp_path / "r"), progress=False)
    assert not (tmp_path / "r" / "last.pt").exists()
    res = train(_tiny(root, tmp_path / "s", incomplete_clips="skip", epochs=1), progress=False)
    assert res.history


def test_resume_refuses_another_model_and_names_ignored_options(synth_small, tmp_path, caplog):
    cfg = _tiny(synth_small, tmp_path / "r", epochs=1, accum=1)
    train(cfg, progress=False)
    base = [
        "train", "--data-root", cfg.data_root, "--annotations", cfg.annotations,
        "--masks-file", cfg.masks_file, "--out", tmp_path / "r", "--resume", "-q",
        "--i3d-weights", "none", "--workers", "0",
    ]  # fmt: skip
    r = _cli(*base, "--config", "small")
    assert r.exit_code == 1 and "model='tiny'" in r.output and "cannot change the model" in r.output
    with caplog.at_level(logging.WARNING):
        r = _cli(*base, "--lr", "0.05", "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert "lr=0.001 (given 0.05)" in caplog.text
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["lr"] == 0.001 and saved["epochs"] == 2 and saved["model"] == "tiny"


def test_outputs_get_the_umask_mode_not_0600(synth_small, tmp_path):
    old = os.umask(0o002)
    try:
        m = np.zeros((3, 8, 8), np.uint8)
        m[:, 2:4, 2:4] = 1
        h5 = tmp_path / "s.h5"
        with StoreWriter(h5) as w:
            w.add_video(("v",), height=8, width=8)
            w.write_layer(("v",), "gtm", LayerData.from_masks([0, 1, 2], m))
        unpack_png(h5, tmp_path / "png", progress=False)
        r = _cli("unpack", h5, "--format", "coco", "--out", tmp_path / "c.json")
        assert r.exit_code == 0, r.output
        for p in (h5, tmp_path / "png" / "v" / "00000.png", tmp_path / "c.json"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o664, p
        assert stat.S_IMODE((tmp_path / "png").stat().st_mode) == 0o775
        os.chmod(h5, 0o640)  # an existing store keeps its own mode when rewritten
        with StoreWriter(h5, mode="append") as w:
            w.add_video(("w",), height=8, width=8)
        assert stat.S_IMODE(h5.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_merge_validate_unpack_smaller_cases(tmp_path):
    m = np.zeros((3, 8, 8), np.uint8)
    m[0, 1:3, 1:3] = 1
    m[1, 2:5, 2:5] = 1
    m[2, 4:6, 1:7] = 1
    a = tmp_path / "a.h5"
    with StoreWriter(a) as w:
        w.add_video(("v",), height=8, width=8)
        w.write_layer(("v",), "gtm", LayerData.from_masks([0, 1, 2], m))
    r = _cli("merge", a, "--out", a.with_name("exists.h5"))
    assert r.exit_code == 0
    r = _cli("merge", a, "--out", a.with_name("exists.h5"))
    assert r.exit_code == 1 and "--overwrite" in r.output and "--append" not in r.output
    dup = tmp_path / "dup.h5"
    with StoreWriter(dup) as w:  # a store written by something else, with frame 1 twice
        w.add_video(("v",), height=8, width=8)
        d = LayerData.from_masks([0, 1, 2], m)
        d.frame_index = np.array([0, 1, 1], np.int32)
        write_layer_group(w.file["videos"]["v"], "gtm", d, "gzip")
    assert any("frame 1 appears more than once" in p for p in validate_store(dup))
    with pytest.raises(InputError, match=r"dup.h5: video v layer gtm holds frame 1 twice"):
        merge_stores([dup], tmp_path / "m.h5", progress=False)


def test_folder_dataset_with_video_files_and_frame_folders_takes_both(tmp_path):
    from hmtools.annotation.pseudo_mask import list_videos

    root = tmp_path / "v"
    (root / "clipA").mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(root / "clipA" / f"{t:05d}.jpg"), np.zeros((16, 16, 3), np.uint8))
    wr = cv2.VideoWriter(str(root / "clipB.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
    for _ in range(3):
        wr.write(np.zeros((16, 16, 3), np.uint8))
    wr.release()
    assert sorted(j.video_id for j in list_videos(root)) == [("clipA",), ("clipB",)]
    (root / "clipB").mkdir()
    cv2.imwrite(str(root / "clipB" / "00000.jpg"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InputError, match="video clipB is both"):
        list_videos(root)


def test_pack_skip_bad_and_unpack_counts_agree(tmp_path):
    _jpeg_masks(tmp_path / "m", videos=1, frames=7)
    pack_folder(tmp_path / "m", tmp_path / "s.h5", layout="folder", progress=False)
    r = _cli("unpack", tmp_path / "s.h5", "--out", tmp_path / "o", "-q")
    assert r.exit_code == 0 and "wrote 7 masks" in r.output
    assert len(list((tmp_path / "o").rglob("*.png"))) == 7
