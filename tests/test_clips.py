from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from hmtools import interpretations as interp
from hmtools.datasets.clips import ClipConfig, ClipDataset, ExemplarIndex, PairDataset
from hmtools.datasets.records import load_finediving
from hmtools.errors import InputError
from hmtools.masks import LayerData, StoreWriter

SMALL = ClipConfig(length=32, num_snippets=4, snippet_len=8, stride=8, resize_hw=(64, 114), crop=56)


def _samples(root, split="train"):
    s = load_finediving(root / "Annotations", root / "frames")
    return [x for x in s if x.split == split] if split else s


def _synth_clips(root, cfg, split="train", seed=0):
    """Clips of a `hmtools synth` dataset with its gtm masks (train augmentation for train)."""
    return ClipDataset(
        _samples(root, split),
        cfg,
        train=split == "train",
        masks_file=root / "Synth-HM.h5",
        layer="gtm",
        seed=seed,
    )


def test_paper_config_shapes(synth_small):
    ds = _synth_clips(synth_small, ClipConfig())
    it = ds[0]
    assert it["video"].shape == (3, 103, 224, 224)
    assert it["video"].min() >= -1 and it["video"].max() <= 1
    assert it["mask_target"].shape == (20, 4, 56, 56)
    assert it["soft_labels"].shape == (6, 20)
    assert it["transitions"].shape == (2,)


def test_deterministic_per_epoch_and_index(synth_small):
    ds = _synth_clips(synth_small, SMALL, seed=3)
    a, b = ds[1], ds[1]
    assert np.array_equal(a["video"], b["video"])
    differs = False
    for e in range(1, 6):
        ds.set_epoch(e)
        differs |= not np.array_equal(ds[1]["video"], a["video"])
    assert differs  # crops/flips/shifts change between epochs
    test = _synth_clips(synth_small, SMALL, split="test")
    assert "mask_target" not in test[0]  # evaluation never reads masks


def test_item_without_video_reads_no_frame(synth_small, monkeypatch):
    """The prefix cache asks for items without frames when it already holds their prefix: the
    rest of the item (mask target of the same crop and flip, labels, score) is unchanged."""
    ds = _synth_clips(synth_small, SMALL, seed=3)
    for epoch in range(4):  # several crops / flips / shifts
        ds.set_epoch(epoch)
        full = ds[2]
        with monkeypatch.context() as m:
            m.setattr("hmtools.datasets.clips._read_frame", _no_read)
            light = ds.item(2, video=False)
        assert set(full) - set(light) == {"video"}
        for k, v in light.items():
            assert np.array_equal(np.asarray(v), np.asarray(full[k])), k


def _no_read(*a, **k):
    raise AssertionError("a frame was read")


def _mask_video_dataset(tmp_path, n_frames=40):
    """Frames that *are* their masks, so frame and mask transforms can be compared."""
    ann = tmp_path / "Annotations"
    ann.mkdir()
    rng = np.random.default_rng(0)
    key = ("maskvid", 0)
    d = tmp_path / "frames" / "maskvid" / "0"
    d.mkdir(parents=True)
    masks = np.zeros((n_frames, 64, 114), np.uint8)
    for t in range(n_frames):
        x, y = int(rng.integers(0, 80)), int(rng.integers(0, 40))
        masks[t, y : y + 20, x : x + 30] = 1
        cv2.imwrite(str(d / f"{100 + t:05d}.png"), masks[t] * 255)
    labels = np.array([1] * 10 + [2] * 20 + [3] * 10)
    aqa = {
        key: ["101a", 50.0, 2.0, np.array([9, 29]), labels],
        ("maskvid", 1): ["101a", 40.0, 2.0, np.array([9, 29]), labels],
    }
    (tmp_path / "frames" / "maskvid" / "1").symlink_to(d)
    for name, obj in [
        ("fine-grained_annotation_aqa.pkl", aqa),
        ("train_split.pkl", list(aqa)),
        ("test_split.pkl", []),
    ]:
        (ann / name).write_bytes(pickle.dumps(obj))
    with StoreWriter(tmp_path / "m.h5") as w:
        for k in aqa:
            w.add_video(k, height=64, width=114, num_frames=n_frames)
            w.write_layer(k, "gtm", LayerData.from_masks(np.arange(100, 100 + n_frames), masks))
    return load_finediving(ann, tmp_path / "frames"), masks


def test_frames_and_masks_transform_together(tmp_path):
    samples, _ = _mask_video_dataset(tmp_path)
    cfg = ClipConfig(
        length=32,
        num_snippets=4,
        snippet_len=8,
        stride=8,
        resize_hw=(64, 114),
        crop=48,
        stage2_stride=1,
    )
    ds = ClipDataset(samples, cfg, train=True, masks_file=tmp_path / "m.h5", layer="gtm")
    for epoch in range(4):  # several random crops and flips
        ds.set_epoch(epoch)
        it = ds[0]
        white = (it["video"][0].numpy() > 0).astype(np.float32)  # frames are the masks
        expect = np.stack(
            [interp.mask_target(white[a : a + 8], (48, 48)) for a in cfg.snippet_starts()]
        )
        np.testing.assert_allclose(it["mask_target"].numpy(), expect, atol=1e-6)


def test_missing_masks_error_or_fallback(tmp_path):
    samples, masks = _mask_video_dataset(tmp_path)
    with StoreWriter(tmp_path / "holes.h5") as w:
        w.add_video(("maskvid", 0), height=64, width=114)
        w.write_layer(("maskvid", 0), "gtm", LayerData.from_masks(np.arange(100, 110), masks[:10]))
    ds = ClipDataset(samples[:1], SMALL, train=True, masks_file=tmp_path / "holes.h5", layer="gtm")
    with pytest.raises(InputError, match=r"video maskvid/0 has no 'gtm' mask for frame 11\d"):
        ds[0]
    ds = ClipDataset(
        samples[:1],
        SMALL,
        train=True,
        masks_file=tmp_path / "holes.h5",
        layer="gtm",
        mask_fallback="nearest",
    )
    assert ds[0]["mask_target"].sum() > 0


def test_exemplar_selection(synth_small):
    train, test = _samples(synth_small), _samples(synth_small, "test")
    ex = ExemplarIndex(train, "an")
    rng = np.random.default_rng(0)
    for s in train:
        k = ex.training_exemplar(s, rng)
        assert train[k].action_type == s.action_type
        if len(ex.candidates(s)) > 1:
            assert train[k].id != s.id
    for s in test:
        ks = ex.test_exemplars(s, 10, rng)
        assert 1 <= len(ks) <= 10 and len(set(ks)) == len(ks)
    dd = ExemplarIndex(train, "dd")
    for s in train:
        assert all(train[k].difficulty == s.difficulty for k in dd.candidates(s))
    pairs = PairDataset(ClipDataset(train, SMALL, train=True), ex)
    q, e = pairs[0]
    assert q["video"].shape == e["video"].shape
