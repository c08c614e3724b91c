from __future__ import annotations

import json
import os
import pickle

import cv2
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.datasets.records import load_aqa7, load_finediving, load_mtl_aqa
from hmtools.errors import InputError
from hmtools.safe_pickle import load_pickle
from tests.conftest import shared_path


def test_real_finediving_annotations():
    ann = shared_path("FineDiving", "Annotations")
    samples = load_finediving(ann)
    assert len(samples) == 3000
    split = {s.split for s in samples}
    assert split == {"train", "test"}
    assert sum(s.split == "train" for s in samples) == 2251
    assert sum(s.split == "test" for s in samples) == 749
    by_id = {s.id: s for s in samples}
    s = by_id[("FINADivingWorldCup2021_Men3m_final_r1", 8)]
    assert s.action_type == "205b" and s.difficulty == 3.0 and s.final_score == 66.0
    assert s.step_transitions.tolist() == [40, 69]
    assert s.judge_scores is not None and len(s.judge_scores) in (3, 5, 7)
    assert by_id[("01", 1)].id == ("01", 1)  # MTL-AQA videos re-annotated keep str names
    assert {len(x.step_transitions) for x in samples} == {2, 3, 4}


def test_dataset_summary_cli_on_real_pickles():
    ann = shared_path("FineDiving", "Annotations")
    res = CliRunner().invoke(
        main, ["dataset-summary", "--dataset", "finediving", "--annotations", str(ann), "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["samples"] == 3000 and d["splits"] == {"test": 749, "train": 2251}
    assert d["action_types"] == 52
    assert d["step_transitions_per_sample"] == {"2": 2209, "3": 568, "4": 223}


def _pickle_numpy_core(obj, path, has_numpy=True):
    """Write a protocol-2 pickle whose numpy globals use the old ``numpy.core`` names, as the
    released MTL-AQA/FineDiving files do (numpy 2 would write ``numpy._core``)."""
    data = pickle.dumps(obj, protocol=2).replace(b"numpy._core", b"numpy.core")
    assert (b"numpy.core" in data) == has_numpy
    path.write_bytes(data)


def _mtl_fixture(root, n_videos=3, clips=4, frames=130):
    ann = root / "ann"
    ann.mkdir()
    d = {}
    for v in range(1, n_videos + 1):
        for c in range(1, clips + 1):
            d[(v, c)] = {
                "start_frame": 10 * c,
                "end_frame": 104 + 5 * c,
                "difficulty": 3.0 + 0.1 * c,
                "final_score": 50.0 + v + c,
                "judge_scores": np.array([7.0] * 7),
                "dive_number": f"{100 + c}B",
                "position": "pike",
                "armstand": 0,
                "rotation_type": 1,
                "ss_no": 2,
                "tw_no": 0,
                "primary_view": 0,
            }
    _pickle_numpy_core(d, ann / "final_annotations_dict_with_dive_number.pkl")
    keys = sorted(d)
    _pickle_numpy_core(keys[:-3], ann / "train_split_0.pkl", has_numpy=False)
    _pickle_numpy_core(keys[-3:], ann / "test_split_0.pkl", has_numpy=False)
    fr = root / "frames"
    for v in range(1, n_videos + 1):
        (fr / f"{v:02d}").mkdir(parents=True)
        for i in range(frames if v < n_videos else 50):  # the last video is incomplete
            cv2.imwrite(str(fr / f"{v:02d}" / f"{i:06d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    return ann, fr


def test_mtl_aqa_format(tmp_path):
    ann, fr = _mtl_fixture(tmp_path)
    samples = load_mtl_aqa(ann, fr)
    assert len(samples) == 12
    s = next(x for x in samples if x.id == (1, 2))
    assert s.action_type == "102B" and s.split == "train" and len(s.judge_scores) == 7
    files = s.frame_files(103)
    assert len(files) == 103 and files[-1][0] == s.end_frame - 1  # image_list[end - L + i]
    assert s.extra["position"] == "pike"
    with pytest.raises(InputError, match=r"sample 3/1: needs sorted frames"):
        next(x for x in samples if x.id == (3, 1)).frame_files(103)
    res = CliRunner().invoke(
        main,
        [
            "dataset-summary",
            "--dataset",
            "mtl-aqa",
            "--annotations",
            str(ann),
            "--data-root",
            str(fr),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "frame folders complete: 8 of 12" in res.output
    assert "missing 3/1" in res.output


def test_aqa7_format(tmp_path):
    split = tmp_path / "Split_4"
    split.mkdir()
    tr = np.array([[1, 1, 80.5], [1, 2, 60.0], [2, 7, 15.2]])
    te = np.array([[1, 3, 70.0], [6, 4, 88.8]])
    scipy.io.savemat(split / "split_4_train_list.mat", {"consolidated_train_list": tr})
    scipy.io.savemat(split / "split_4_test_list.mat", {"consolidated_test_list": te})
    d = tmp_path / "diving-out" / "001"
    d.mkdir(parents=True)
    for i in range(1, 104):
        cv2.imwrite(str(d / f"img_{i:05d}.jpg"), np.zeros((4, 4, 3), np.uint8))
    samples = load_aqa7(tmp_path, tmp_path)
    assert [s.id for s in samples] == [
        ("diving", 1),
        ("diving", 2),
        ("gym_vault", 7),
        ("diving", 3),
        ("sync_diving_10m", 4),
    ]
    assert samples[0].frame_files(103)[0][0] == 1 and len(samples[0].frame_files(103)) == 103
    assert samples[-1].split == "test" and samples[-1].final_score == pytest.approx(88.8)
    scipy.io.savemat(split / "split_4_test_list.mat", {"wrong_name": te})
    with pytest.raises(InputError, match="consolidated_test_list"):
        load_aqa7(tmp_path)


def test_bad_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run > " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({("a", 1): Evil()}))
    with pytest.raises(InputError, match="refused to unpickle: global posix.system"):
        load_pickle(p)
    assert not (tmp_path / "pwned").exists()
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "fine-grained_annotation_aqa.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (ann / "train_split.pkl").write_bytes(pickle.dumps([]))
    (ann / "test_split.pkl").write_bytes(pickle.dumps([]))
    with pytest.raises(InputError, match="expected a dict keyed by sample"):
        load_finediving(ann)
    (ann / "fine-grained_annotation_aqa.pkl").write_bytes(pickle.dumps({("v", 1): ["101b", 1.0]}))
    with pytest.raises(InputError, match=r"sample \('v', 1\): expected \[dive_number"):
        load_finediving(ann)
    (ann / "test_split.pkl").unlink()
    with pytest.raises(InputError, match="test_split.pkl: missing"):
        load_finediving(ann)
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(InputError, match="not a readable annotation pickle"):
        load_pickle(tmp_path / "trunc.pkl")
