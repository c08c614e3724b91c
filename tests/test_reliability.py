"""Reliability and security: long videos, checkpoints that would run code, damaged stores, ids
that would write outside the export folder, and a property test of pack -> validate -> unpack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmtools.cli import main
from hmtools.engine import train
from hmtools.engine.train import evaluate_run, load_checkpoint
from hmtools.errors import InputError
from hmtools.masks import LayerData, MaskStore, StoreWriter, pack_folder, unpack_png
from hmtools.masks.validate import validate_store
from tests.conftest import synth_train_config

LONG = 1000  # frames in the long-video tests (pycocotools' area failed from 256 on)


def _cli(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def _long_mask_tree(root: Path, frames: int = LONG, h: int = 48, w: int = 64) -> np.ndarray:
    d = root / "vid1"
    d.mkdir(parents=True)
    masks = np.zeros((frames, h, w), np.uint8)
    for t in range(frames):
        x = t % (w - 12)
        masks[t, 10:30, x : x + 12] = 1
        if t % 97 == 0:
            masks[t] = 0  # some empty frames
        cv2.imwrite(str(d / f"{t + 1:05d}.png"), masks[t] * 255)
    return masks


def test_a_video_of_1000_frames_through_pack_unpack_merge_stats(tmp_path):
    truth = _long_mask_tree(tmp_path / "masks")
    h5 = tmp_path / "x.h5"
    r = _cli("pack", tmp_path / "masks", "--layout", "folder", "--layer", "gtm", "--out", h5, "-q")
    assert r.exit_code == 0, r.output
    assert validate_store(h5) == []
    with MaskStore(h5) as s:
        fi, m = s.read_masks(("vid1",), "gtm")
        assert fi.tolist() == list(range(1, LONG + 1))
        np.testing.assert_array_equal(m, truth)
        d = s.read_layer(("vid1",), "gtm")
        np.testing.assert_array_equal(d.area, truth.sum((1, 2)))
    r = _cli("unpack", h5, "--out", tmp_path / "png", "-q")
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "png" / "vid1").glob("*.png"))
    assert len(files) == LONG and f"{LONG} masks" in r.output
    for f in (files[0], files[500], files[-1]):
        np.testing.assert_array_equal(
            cv2.imread(str(f), cv2.IMREAD_UNCHANGED),
            cv2.imread(str(tmp_path / "masks" / "vid1" / f.name), cv2.IMREAD_UNCHANGED),
        )
    r = _cli("merge", h5, "--out", tmp_path / "m.h5")
    assert r.exit_code == 0, r.output
    with MaskStore(tmp_path / "m.h5") as s:
        assert len(s.frame_index(("vid1",), "gtm")) == LONG
    r = _cli("stats", h5, "--out", tmp_path / "stats")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "stats" / "report.md").exists()


@pytest.mark.slow
def test_pseudo_mask_on_a_video_of_1000_frames(tmp_path):
    d = tmp_path / "videos" / "long"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(LONG):
        f = np.full((48, 64, 3), 90, np.uint8) + rng.integers(0, 8, (48, 64, 3), dtype=np.uint8)
        cv2.circle(f, (14 + (t % 36), 24), 6, (0, 0, 255), -1)
        cv2.imwrite(str(d / f"{t:05d}.jpg"), f)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"long": [6, 16, 16, 16]}))
    out = tmp_path / "pm.h5"
    r = _cli(
        "pseudo-mask", tmp_path / "videos", "--out", out, "--segmenter", "background",
        "--prompts", prompts, "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with MaskStore(out) as s:
        assert len(s.frame_index(("long",), "pm")) == LONG
    assert validate_store(out) == []


# -- checkpoints that run code ----------------------------------------------------------------


class _RunsCode:
    """A pickle payload that calls ``os.system`` when unpickled with ``weights_only=False``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(synth_small, tmp_path):
    run = tmp_path / "run"
    cfg = synth_train_config(synth_small, run, model="tiny", epochs=1, workers=0, voters=2)
    cfg.i3d_weights = "none"
    train(cfg, progress=False)
    good = load_checkpoint(run / "last.pt")  # our own checkpoints load with weights_only=True
    assert good["epoch"] == 0 and isinstance(good["config"], str)
    marker = tmp_path / "pwned"
    for name in ("last.pt", "best.pt"):
        torch.save({"model": _RunsCode(marker), "config": good["config"]}, run / name)
    r = _cli("eval", run)
    assert r.exit_code == 1 and "best.pt: refused" in r.output and "Traceback" not in r.output
    r = _cli(
        "train", "--data-root", cfg.data_root, "--annotations", cfg.annotations,
        "--config", "tiny", "--out", run, "--resume", "--epochs", "2", "-q",
    )  # fmt: skip
    assert r.exit_code == 1 and "last.pt: refused" in r.output
    with pytest.raises(InputError, match="best.pt: refused"):
        evaluate_run(run)
    assert not marker.exists()  # nothing ran
    torch.save({"weights": torch.zeros(2)}, run / "best.pt")  # loads, but is not ours
    with pytest.raises(InputError, match="not an hmtools checkpoint"):
        evaluate_run(run)


# -- damaged stores ---------------------------------------------------------------------------


def _store(path: Path, videos: int = 3, frames: int = 300) -> None:
    rng = np.random.default_rng(1)
    with StoreWriter(path, name="t") as w:
        for v in range(videos):
            m = (rng.random((frames, 40, 56)) > 0.5).astype(np.uint8)
            w.add_video((f"vid{v}", 0), height=40, width=56, num_frames=frames, action_type="107B")
            w.write_layer((f"vid{v}", 0), "gtm", LayerData.from_masks(np.arange(frames), m))


def _flip_chunk_bytes(path: Path, key: str, layer: str = "gtm", n: int = 64) -> None:
    """Invert ``n`` bytes in the middle of the first compressed chunk of ``rle_bytes``."""
    with h5py.File(path, "r") as f:
        info = f["videos"][key][layer]["rle_bytes"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    at = info.byte_offset + info.size // 2
    raw[at : at + n] = bytes(255 - b for b in raw[at : at + n])
    path.write_bytes(bytes(raw))


def test_a_damaged_store_is_reported_not_a_traceback(tmp_path):
    h5 = tmp_path / "s.h5"
    _store(h5)
    _flip_chunk_bytes(h5, "vid1|#0")
    problems = validate_store(h5)
    assert len(problems) == 1 and "video vid1/0 layer gtm" in problems[0]
    assert "damaged" in problems[0]
    r = _cli("validate", h5)
    assert r.exit_code == 1 and "vid1/0" in r.output and "Traceback" not in r.output
    for args, target in (
        (("stats", h5, "--out", tmp_path / "stats"), tmp_path / "stats"),
        (("merge", h5, "--out", tmp_path / "m.h5"), tmp_path / "m.h5"),
        (("unpack", h5, "--out", tmp_path / "png"), tmp_path / "png"),
    ):
        r = _cli(*args)
        assert r.exit_code == 1, (args, r.output)
        err = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and "video vid1/0 layer 'gtm'" in err[0], r.output
        assert "Traceback" not in r.output
        assert not target.exists(), args  # nothing written (vid0 came before the damage)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# -- unpack stays inside --out ----------------------------------------------------------------


def test_unpack_never_writes_outside_out(tmp_path):
    h5 = tmp_path / "evil.h5"
    m = np.zeros((2, 8, 8), np.uint8)
    m[:, 2:5, 2:5] = 1
    ids = [("..", "..", "escape"), ("/abs", "x"), ("a/../../b",), ("c:\\win",), (".",), ("ok", 3)]
    with StoreWriter(h5) as w:
        for vid in ids:
            w.add_video(vid, height=8, width=8)
            w.write_layer(vid, "gtm", LayerData.from_masks([0, 1], m))
    out = tmp_path / "deep" / "missing" / "out"  # parents do not exist yet
    n = unpack_png(h5, out, progress=False)
    written = sorted(p for p in tmp_path.rglob("*.png"))
    assert n == len(written) == 2 * len(ids)
    root = out.resolve()
    assert all(root in p.resolve().parents for p in written)
    assert (out / "ok" / "3" / "00000.png").exists()
    assert (out / "%2E%2E" / "%2E%2E" / "escape" / "00001.png").exists()
    # a frame pattern that names another folder is refused, naming the video; nothing written
    bad = tmp_path / "pattern.h5"
    with StoreWriter(bad) as w:
        w.add_video(("v",), height=8, width=8, frame_pattern="../../{:05d}.png")
        w.write_layer(("v",), "gtm", LayerData.from_masks([0, 1], m))
    with pytest.raises(InputError, match=r"video v: frame_pattern .* not a file name"):
        unpack_png(bad, tmp_path / "o2", progress=False)
    assert not (tmp_path / "o2").exists()
    # two frames that one pattern gives the same name: refused, not silently one file
    clash = tmp_path / "clash.h5"
    with StoreWriter(clash) as w:
        w.add_video(("v",), height=8, width=8, frame_pattern="mask.png")
        w.write_layer(("v",), "gtm", LayerData.from_masks([0, 1], m))
    with pytest.raises(InputError, match="frames 0 and 1 would both be written to mask.png"):
        unpack_png(clash, tmp_path / "o3", progress=False)


# -- property: pack -> validate -> unpack is bit exact ----------------------------------------


@st.composite
def _videos(draw):
    """A few videos: frame counts 1-1,200, sizes up to 1080p (total pixels capped so one example
    stays within seconds), masks that are random, empty, full or a moving box."""
    n = draw(st.integers(1, 3))
    out = []
    budget = 60_000_000
    for v in range(n):
        h = draw(st.integers(1, 1080))
        w = draw(st.integers(1, 1920))
        frames = draw(st.integers(1, max(1, min(1200, budget // (h * w)))))
        budget = max(budget - frames * h * w, h * w)
        kind = draw(st.sampled_from(["empty", "full", "box", "noise"]))
        seed = draw(st.integers(0, 2**31 - 1))
        out.append((f"v{v}", frames, h, w, kind, seed))
    return out


def _masks(frames: int, h: int, w: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "empty":
        return np.zeros((frames, h, w), np.uint8)
    if kind == "full":
        return np.ones((frames, h, w), np.uint8)
    if kind == "noise":
        return (rng.random((frames, h, w)) < rng.uniform(0.01, 0.99)).astype(np.uint8)
    m = np.zeros((frames, h, w), np.uint8)
    for t in range(frames):
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[t, y : y + rng.integers(1, h + 1), x : x + rng.integers(1, w + 1)] = 1
    return m


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(videos=_videos())
def test_pack_validate_unpack_is_bit_exact(tmp_path_factory, videos):
    tmp = tmp_path_factory.mktemp("prop")
    truth = {}
    for name, frames, h, w, kind, seed in videos:
        m = _masks(frames, h, w, kind, seed)
        d = tmp / "masks" / name
        d.mkdir(parents=True)
        for t in range(frames):
            cv2.imwrite(str(d / f"{t:05d}.png"), m[t] * 255)
        truth[name] = m
    h5 = tmp / "s.h5"
    pack_folder(tmp / "masks", h5, layout="folder", progress=False)
    assert validate_store(h5) == []
    with MaskStore(h5) as s:
        for name, m in truth.items():
            np.testing.assert_array_equal(s.read_masks((name,), "gtm")[1], m)
    n = unpack_png(h5, tmp / "png", progress=False)
    assert n == sum(len(m) for m in truth.values())
    for name, m in truth.items():
        for t in range(len(m)):
            got = cv2.imread(str(tmp / "png" / name / f"{t:05d}.png"), cv2.IMREAD_UNCHANGED)
            assert got is not None and np.array_equal(got, m[t] * 255), (name, t)
