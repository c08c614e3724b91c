from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.masks import (
    ORIGIN_GROUND_TRUTH,
    MaskStore,
    merge_stores,
    pack_coco,
    pack_folder,
    unpack_coco,
    unpack_png,
)
from hmtools.masks.frames import frame_numbers, frame_pattern
from tests.conftest import write_mask_tree


def _tree_equal(a, b):
    fa = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    fb = sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert fa == fb and fa
    for rel in fa:
        x = cv2.imread(str(a / rel), cv2.IMREAD_UNCHANGED)
        y = cv2.imread(str(b / rel), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(x, y)


def test_png_tree_round_trip_bit_exact(tmp_path, mask_tree):
    root, truth = mask_tree
    h5 = tmp_path / "FineDiving-HM.h5"
    rep = pack_folder(root, h5, layer="gtm", progress=False)
    assert rep.videos == 3 and rep.masks == 12 + 8 + 3
    out = tmp_path / "png"
    assert unpack_png(h5, out, progress=False) == 23
    _tree_equal(root, out)
    with MaskStore(h5) as s:
        ids = set(s.video_ids())
        assert ("FINADivingWorldCup2021_Men3m_final_r1", 0) in ids
        assert ("01", 3) in ids  # the name stays a str, the clip an int
        fi, m = s.read_masks(("FINADivingWorldCup2021_Men3m_final_r1", 0), "gtm")
        assert fi.tolist() == list(range(489, 501))
        np.testing.assert_array_equal(
            m[0], truth[("FINADivingWorldCup2021_Men3m_final_r1", 0)][489]
        )
        assert set(s.read_layer(("01", 3), "gtm").origin) == {ORIGIN_GROUND_TRUTH}


def test_jpeg_masks_binarised_with_threshold(tmp_path):
    root = tmp_path / "m"
    truth = write_mask_tree(root, {("v", 0): list(range(6))}, h=256, w=455, ext=".jpg")
    h5 = tmp_path / "s.h5"
    pack_folder(root, h5, progress=False)
    with MaskStore(h5) as s:
        _, m = s.read_masks(("v", 0), "gtm")
    for i, f in enumerate(range(6)):
        t = truth[("v", 0)][f]
        # JPEG ringing only flips pixels next to the boundary
        diff = m[i] != t
        assert diff.sum() <= 0.002 * t.size
        near = cv2.dilate(t, np.ones((3, 3), np.uint8)) != cv2.erode(t, np.ones((3, 3), np.uint8))
        assert not np.any(diff & ~near)


def test_pack_bad_inputs_are_all_or_nothing(tmp_path, mask_tree):
    root, _ = mask_tree
    h5 = tmp_path / "s.h5"
    bad = root / "01" / "3" / "00002.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(InputError, match="00002.png"):
        pack_folder(root, h5, progress=False)
    assert not h5.exists() and list(tmp_path.glob(".s.h5*")) == []
    rep = pack_folder(root, h5, skip_bad=True, progress=False)
    assert rep.videos == 2 and rep.bad[0][0] == "01/3"
    bad.unlink()
    cv2.imwrite(str(bad), np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match=r"00002.png: size 10x10 differs"):
        pack_folder(root, tmp_path / "t.h5", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        pack_folder(tmp_path / "empty", tmp_path / "u.h5")


def test_pack_overwrite_append(tmp_path, mask_tree):
    root, _ = mask_tree
    h5 = tmp_path / "s.h5"
    pack_folder(root, h5, progress=False)
    with pytest.raises(InputError, match="exists"):
        pack_folder(root, h5, progress=False)
    pack_folder(root, h5, layer="pm", append=True, progress=False)
    with MaskStore(h5) as s:
        assert s.layer_names() == ["gtm", "pm"]
    with pytest.raises(InputError, match="already has layer"):
        pack_folder(root, h5, layer="pm", append=True, progress=False)
    pack_folder(root, h5, layer="pm", overwrite=True, progress=False)
    with MaskStore(h5) as s:
        assert s.layer_names() == ["pm"]


def test_coco_round_trip_and_polygons(tmp_path, mask_tree):
    root, _ = mask_tree
    h5 = tmp_path / "s.h5"
    pack_folder(root, h5, progress=False)
    js = tmp_path / "out.json"
    assert (
        unpack_coco(h5, js) == 18
    )  # 23 frames, 5 of them empty: an image entry each, no annotation
    h5b = tmp_path / "b.h5"
    pack_coco(js, h5b, progress=False)
    out_a, out_b = tmp_path / "a_png", tmp_path / "b_png"
    unpack_png(h5, out_a, progress=False)
    unpack_png(h5b, out_b, progress=False)
    _tree_equal(out_a, out_b)
    # a plain COCO file from another tool: polygons, two people on one image, no hm fields
    coco = {
        "images": [
            {"id": 7, "file_name": "clipX/4/00010.jpg", "height": 20, "width": 30},
            {"id": 8, "file_name": "clipX/4/00011.jpg", "height": 20, "width": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "segmentation": [[1, 1, 10, 1, 10, 10, 1, 10]]},
            {"id": 2, "image_id": 7, "segmentation": [[15, 5, 25, 5, 25, 15, 15, 15]]},
        ],
    }
    (tmp_path / "p.json").write_text(json.dumps(coco))
    pack_coco(tmp_path / "p.json", tmp_path / "p.h5", progress=False)
    with MaskStore(tmp_path / "p.h5") as s:
        fi, m = s.read_masks(("clipX", 4), "gtm")
        assert fi.tolist() == [10, 11]
        assert m[0, 5, 5] == 1 and m[0, 10, 20] == 1 and m[1].sum() == 0
    coco["annotations"].append(
        {"id": 3, "image_id": 8, "segmentation": {"size": [20, 31], "counts": "abc"}}
    )
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match="clipX/4 frame 11: RLE size"):
        pack_coco(tmp_path / "bad.json", tmp_path / "q.h5", progress=False)
    assert not (tmp_path / "q.h5").exists()
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        pack_coco(tmp_path / "nojson.json", tmp_path / "q.h5")


def test_merge_and_conflict(tmp_path, mask_tree):
    root, _ = mask_tree
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    pack_folder(root, a, layer="pm", progress=False)
    pack_folder(root, b, layer="pm", progress=False)  # identical: merging is fine
    stats = merge_stores([a, b], tmp_path / "m.h5", progress=False)
    assert stats["masks"] == 23
    other = tmp_path / "other"
    write_mask_tree(other, {("01", 3): [0]}, seed=5)
    img = cv2.imread(str(other / "01/3/00000.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(other / "01/3/00000.png"), 255 - img)
    c = tmp_path / "c.h5"
    pack_folder(other, c, layer="pm", progress=False)
    with pytest.raises(Exception, match="frame 0: .* hold different masks"):
        merge_stores([a, c], tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_frame_numbers_and_patterns():
    assert frame_numbers(["00489.jpg", "00490.jpg"]) == [489, 490]
    assert frame_numbers(["img_00012.jpg", "img_00003.jpg"]) == [12, 3]
    assert frame_numbers(["b.jpg", "a.jpg", "c1.jpg"]) == [1, 0, 2]  # not all numbered
    with pytest.raises(InputError, match="same frame number"):
        frame_numbers(["1.jpg", "01.jpg"])
    assert frame_pattern(["img_00012.jpg", "img_00003.jpg"]) == "img_{:05d}.jpg"
    assert frame_pattern(["1.png", "10.png"]) == "{:d}.png"
    assert frame_pattern(["a1.png", "b2.png"]) is None


def test_cli_end_to_end(tmp_path, mask_tree):
    root, _ = mask_tree
    r = CliRunner()
    h5 = tmp_path / "FineDiving-HM.h5"
    res = r.invoke(main, ["pack", str(root), "--out", str(h5), "--name", "FineDiving-HM", "-q"])
    assert res.exit_code == 0, res.output
    assert "23 masks of 3 videos" in res.output
    res = r.invoke(main, ["pack", str(root), "--out", str(h5), "-q"])
    assert res.exit_code == 1 and "exists" in res.output and "Traceback" not in res.output
    res = r.invoke(main, ["pack", str(root), "--out", str(h5), "--layer", "pm", "--append", "-q"])
    assert res.exit_code == 0
    res = r.invoke(main, ["info", str(h5), "--json"])
    info = json.loads(res.output)
    assert info["videos"] == 3 and info["frames_with_both"] == 23 and info["masks"] == 46
    assert info["name"] == "FineDiving-HM"
    res = r.invoke(main, ["validate", str(h5)])
    assert res.exit_code == 0 and res.output.startswith("OK")
    res = r.invoke(main, ["unpack", str(h5), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "--layer" in res.output
    res = r.invoke(main, ["unpack", str(h5), "--layer", "gtm", "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0
    _tree_equal(root, tmp_path / "o")
    res = r.invoke(
        main,
        [
            "unpack",
            str(h5),
            "--layer",
            "pm",
            "--format",
            "coco",
            "--out",
            str(tmp_path / "pm.json"),
        ],
    )
    assert res.exit_code == 0 and json.loads((tmp_path / "pm.json").read_text())["annotations"]
    res = r.invoke(main, ["merge", str(h5), str(h5), "--out", str(tmp_path / "m.h5"), "-q"])
    assert res.exit_code == 0, res.output
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    res = r.invoke(main, ["validate", str(tmp_path / "broken.h5")])
    assert res.exit_code == 1 and "INVALID" in res.output
    res = r.invoke(main, ["--help"])
    for cmd in ("pack", "unpack", "validate", "info", "merge"):
        assert cmd in res.output


def test_coco_export_leaves_empty_masks_without_annotation(tmp_path):
    from hmtools.masks import LayerData, StoreWriter

    m = np.zeros((3, 8, 10), np.uint8)
    m[0, 2:5, 3:6] = 1  # frames 1 and 2 are empty
    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_video(("v", 1), height=8, width=10, num_frames=3)
        w.write_layer(("v", 1), "pm", LayerData.from_masks([0, 1, 2], m, [0.9, 0.2, np.nan], 0))
    js = tmp_path / "c.json"
    assert unpack_coco(tmp_path / "s.h5", js) == 1
    coco = json.loads(js.read_text())
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 1
    assert all(a["area"] > 0 and a["bbox"][2] > 0 for a in coco["annotations"])
    assert coco["images"][1]["hm_score"] == pytest.approx(0.2)
    assert coco["images"][2]["hm_score"] is None
    pack_coco(js, tmp_path / "b.h5", layer="pm", progress=False)
    with MaskStore(tmp_path / "b.h5") as s:
        d = s.read_layer(("v", 1), "pm")
        assert np.array_equal(d.decode(8, 10), m)
        assert d.score[1] == pytest.approx(0.2) and np.isnan(d.score[2])
        assert d.origin.tolist() == [0, 0, 0]


def test_frames_found_by_number_whatever_extension_and_padding(tmp_path):
    """DAVIS-style: PNG masks beside JPEG frames; frames named 00012.jpg, 12.png, img_012.jpeg."""
    from hmtools.masks.frames import FrameLocator

    img = np.zeros((4, 4, 3), np.uint8)
    (tmp_path / "f" / "dive" / "3").mkdir(parents=True)
    (tmp_path / "f" / "plain").mkdir(parents=True)
    for name in ("00012.jpg", "00013.jpg"):
        cv2.imwrite(str(tmp_path / "f" / "dive" / "3" / name), img)
    for name in ("7.png", "img_008.jpeg", "00009.jpg", "9.png"):
        cv2.imwrite(str(tmp_path / "f" / "plain" / name), img)
    loc = FrameLocator(tmp_path / "f")
    assert loc.frame(("dive", 3), 12).name == "00012.jpg"
    assert loc.frame(("plain",), 7).name == "7.png"
    assert loc.frame(("plain",), 8).name == "img_008.jpeg"
    with pytest.raises(InputError, match="frame 14: no image numbered 14"):
        loc.frame(("dive", 3), 14)
    with pytest.raises(InputError, match=r"several images have that number .*00009.jpg"):
        loc.frame(("plain",), 9)
    with pytest.raises(InputError, match="no frame folder under"):
        loc.frame(("other",), 1)
    # a store's frames_dir attribute wins over the id's folders
    assert loc.frame(("x", 1), 13, frames_dir="dive/3").name == "00013.jpg"
