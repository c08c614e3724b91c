from __future__ import annotations

import h5py
import numpy as np
import pycocotools.mask as mask_utils
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hmtools.errors import InputError, SchemaError
from hmtools.masks import (
    ORIGIN_CORRECTED,
    LayerData,
    MaskStore,
    StoreWriter,
    rle,
    validate_store,
    video_key,
)


def _store(path, videos):
    with StoreWriter(path, name="T") as w:
        for vid, (frames, masks) in videos.items():
            w.add_video(vid, height=masks.shape[1], width=masks.shape[2], num_frames=len(frames))
            w.write_layer(vid, "gtm", LayerData.from_masks(frames, masks))


mask_arrays = arrays(
    np.uint8,
    st.tuples(st.integers(1, 5), st.integers(1, 23), st.integers(1, 31)),
    elements=st.integers(0, 1),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(masks=mask_arrays, full=st.booleans(), empty=st.booleans())
def test_round_trip_random_masks(tmp_path, masks, full, empty):
    masks = masks.copy()
    if full:
        masks[0] = 1
    if empty:
        masks[-1] = 0
    path = tmp_path / "s.h5"
    frames = np.arange(len(masks)) * 3 + 7
    _store(path, {("v", 0): (frames, masks)})
    with MaskStore(path) as s:
        fi, got = s.read_masks(("v", 0), "gtm")
        np.testing.assert_array_equal(fi, frames)
        np.testing.assert_array_equal(got, masks)
        data = s.read_layer(("v", 0), "gtm")
        np.testing.assert_array_equal(data.area, masks.reshape(len(masks), -1).sum(1))
    assert validate_store(path) == []
    path.unlink()


def test_frame_range_and_random_access(tmp_path):
    rng = np.random.default_rng(1)
    vids = {}
    for k in range(4):
        m = (rng.random((20, 16, 24)) > 0.6).astype(np.uint8)
        vids[(f"v{k}", k)] = (np.arange(100, 120), m)
    path = tmp_path / "s.h5"
    _store(path, vids)
    with MaskStore(path) as s:
        fi, got = s.read_masks(("v2", 2), "gtm", 105, 110)
        np.testing.assert_array_equal(fi, np.arange(105, 110))
        np.testing.assert_array_equal(got, vids[("v2", 2)][1][5:10])
        fi, got = s.read_masks(("v2", 2), "gtm", 0, 50)
        assert got.shape == (0, 16, 24)
        assert sorted(s.video_ids()) == sorted(vids)
        assert ("v1", 1) in s and ("v1", 2) not in s
        with pytest.raises(InputError, match="no layer 'pm'"):
            s.read_masks(("v2", 2), "pm")
        with pytest.raises(InputError, match="no video"):
            s.info(("nope", 0))


def test_stored_bytes_are_plain_coco_rle(tmp_path):
    """Any COCO tool reading rle_bytes[offsets[i]:offsets[i+1]] gets the mask back."""
    masks = np.zeros((3, 10, 12), np.uint8)
    masks[0, 2:5, 3:9] = 1
    masks[2, :, :] = 1
    path = tmp_path / "s.h5"
    _store(path, {("v", 1): (np.array([4, 5, 6]), masks)})
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == "hmtools-hm" and int(f.attrs["schema_version"]) == 1
        g = f["videos"][video_key(("v", 1))]["gtm"]
        off, blob = g["rle_offsets"][()], g["rle_bytes"][()].tobytes()
        for i in range(3):
            r = {"size": [10, 12], "counts": blob[off[i] : off[i + 1]]}
            np.testing.assert_array_equal(mask_utils.decode(r), masks[i])
        np.testing.assert_array_equal(g["bbox"][0], [3, 2, 6, 3])
        np.testing.assert_array_equal(g["bbox"][1], [0, 0, 0, 0])
        assert g["rle_bytes"].compression == "gzip"


def test_writer_refuses_and_appends(tmp_path):
    path = tmp_path / "s.h5"
    m = np.ones((2, 4, 5), np.uint8)
    _store(path, {("a", 0): (np.array([0, 1]), m)})
    with pytest.raises(InputError, match="exists"):
        StoreWriter(path).open()
    with StoreWriter(path, mode="append") as w:
        w.add_video(("a", 0), height=4, width=5)
        w.write_layer(("a", 0), "pm", LayerData.from_masks([0, 1], m, score=0.5))
        with pytest.raises(InputError, match="already has layer"):
            w.write_layer(("a", 0), "gtm", LayerData.from_masks([0], m[:1]))
        with pytest.raises(InputError, match="differs"):
            w.add_video(("a", 0), height=5, width=5)
    with MaskStore(path) as s:
        assert s.info(("a", 0)).layers == ["gtm", "pm"]
        np.testing.assert_allclose(s.read_layer(("a", 0), "pm").score, [0.5, 0.5])


def test_interrupted_write_leaves_target_untouched(tmp_path):
    path = tmp_path / "s.h5"
    m = np.ones((2, 4, 5), np.uint8)
    _store(path, {("a", 0): (np.array([0, 1]), m)})
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt), StoreWriter(path, mode="append") as w:
        w.add_video(("b", 0), height=4, width=5)
        w.write_layer(("b", 0), "gtm", LayerData.from_masks([0, 1], m))
        raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temp file left
    with pytest.raises(OSError), StoreWriter(path, overwrite=True) as w:  # e.g. disk full
        raise OSError(28, "No space left on device")
    assert path.read_bytes() == before


def test_malformed_rle_refused_on_write(tmp_path):
    good = rle.encode(np.ones((4, 5), np.uint8))[0]
    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_video(("a", 0), height=4, width=6)
        with pytest.raises(InputError, match="frame 3"):
            w.write_layer(
                ("a", 0),
                "gtm",
                LayerData(
                    np.array([3], np.int32),
                    [good],
                    np.array([20], np.int32),
                    np.zeros((1, 4), np.float32),
                    np.zeros(1, np.float32),
                    np.zeros(1, np.uint8),
                ),
            )


def test_masks_encoded_here_are_not_decoded_again_on_write_but_a_wrong_size_is_refused(
    tmp_path, monkeypatch
):
    checked = []
    real = rle.check_counts
    monkeypatch.setattr(rle, "check_counts", lambda *a: checked.append(a) or real(*a))
    m = np.ones((3, 4, 6), np.uint8)
    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_video(("a", 0), height=4, width=6)
        w.add_video(("b", 0), height=4, width=5)
        w.write_layer(("a", 0), "gtm", LayerData.from_masks([0, 1, 2], m))
        assert checked == []  # just encoded from 4 x 6 masks: canonical
        with pytest.raises(InputError, match="frame 0"):
            w.write_layer(("b", 0), "gtm", LayerData.from_masks([0, 1, 2], m))
        d = LayerData.from_masks([0, 1, 2], m).take([0, 2])  # anything derived is checked
        w.write_layer(("a", 0), "pm", d)
        assert [c[1:] for c in checked] == [(4, 5), (4, 6), (4, 6)]  # the refused one, then d


def test_schema_version_mismatch(tmp_path):
    path = tmp_path / "s.h5"
    _store(path, {("a", 0): (np.array([0]), np.ones((1, 2, 2), np.uint8))})
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(SchemaError, match="schema_version 2"):
        MaskStore(path)
    assert "schema_version" in validate_store(path)[0]
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(SchemaError, match="not an -HM"):
        MaskStore(other)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(SchemaError, match="not a readable HDF5"):
        MaskStore(tmp_path / "junk.h5")


def test_validate_reports_each_problem(tmp_path):
    path = tmp_path / "s.h5"
    m = np.zeros((3, 6, 7), np.uint8)
    m[:, 1:3, 2:5] = 1
    _store(path, {("a", 0): (np.array([1, 2, 3]), m), ("b", 0): (np.array([1, 2]), m[:2])})
    with h5py.File(path, "r+") as f:
        ga = f["videos"][video_key(("a", 0))]["gtm"]
        ga["frame_index"][...] = [1, 3, 2]
        gb = f["videos"][video_key(("b", 0))]
        gb.attrs["height"] = 5  # RLEs no longer match the size
        ga["origin"][0] = 9
    problems = validate_store(path)
    text = "\n".join(problems)
    assert "not sorted and unique" in text
    assert "video b/0 layer gtm frame 1" in text
    assert "unknown code 9" in text
    assert len(problems) >= 3


def test_layerdata_rejects_duplicates_and_sorts():
    m = np.zeros((3, 2, 2), np.uint8)
    m[1] = 1
    d = LayerData.from_masks([5, 1, 3], m, origin=ORIGIN_CORRECTED)
    assert d.frame_index.tolist() == [1, 3, 5]
    assert d.area.tolist() == [4, 0, 0]
    with pytest.raises(InputError, match="twice"):
        LayerData.from_masks([1, 1, 3], m)


def test_rle_ops_without_decoding():
    a = np.zeros((2, 8, 8), np.uint8)
    b = np.zeros((2, 8, 8), np.uint8)
    a[0, :4] = 1
    b[0, 2:6] = 1
    ra, rb = rle.encode(a), rle.encode(b)
    np.testing.assert_allclose(rle.iou(ra, rb, 8, 8), [16 / 48, 1.0])
    u = rle.union([ra[0], rb[0]], 8, 8)
    assert rle.area([u], 8, 8)[0] == 48


def test_encode_is_pycocotools_on_the_binarised_masks_for_any_input_layout():
    rng = np.random.default_rng(8)
    m = (rng.random((5, 37, 53)) < 0.3).astype(np.uint8)
    ref = [r["counts"] for r in mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0)))]
    for variant in (m, m * 255, m.astype(bool), m.astype(np.int16) * -3, np.asfortranarray(m)):
        assert rle.encode(variant) == ref
    strided = m[:, ::2, 1::3]
    sref = mask_utils.encode(np.asfortranarray(strided.transpose(1, 2, 0)))
    assert rle.encode(strided) == [r["counts"] for r in sref]
    assert rle.encode(m[2]) == ref[2:3]
    np.testing.assert_array_equal(rle.decode(rle.encode(m * 7), 37, 53), m)


def test_videos_found_by_the_id_the_reports_print(tmp_path):
    """``name/clip`` (as stats, review-queue and failures files print it) finds the video."""
    from hmtools.masks import LayerData, MaskStore, StoreWriter

    m = np.zeros((2, 4, 5), np.uint8)
    m[:, 1:3, 1:4] = 1
    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_video(("FINA_r1", 3), height=4, width=5, num_frames=2)
        w.write_layer(("FINA_r1", 3), "gtm", LayerData.from_masks([0, 1], m, None))
        w.add_video(("plain",), height=4, width=5, num_frames=2)
        w.write_layer(("plain",), "gtm", LayerData.from_masks([0, 1], m, None))
    with MaskStore(tmp_path / "s.h5") as st:
        for vid in ("FINA_r1/3", ("FINA_r1", 3), '["FINA_r1", 3]'):
            fi, masks = st.read_masks(vid, "gtm")
            assert fi.tolist() == [0, 1] and np.array_equal(masks, m)
            assert st.info(vid).video_id == ("FINA_r1", 3)
            assert vid in st
        assert st.info("plain").name == "plain"
        assert "FINA_r1/4" not in st
        with pytest.raises(InputError, match="no video FINA_r1/4"):
            st.read_masks("FINA_r1/4", "gtm")
