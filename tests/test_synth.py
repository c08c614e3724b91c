from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.datasets.records import load_finediving
from hmtools.datasets.synth import (
    FACTORS,
    final_score,
    judge_scores,
    make_specs,
    render_clip,
)
from hmtools.errors import InputError
from hmtools.masks import MaskStore, validate_store


def _digest(root):
    h = hashlib.sha256()
    for p in sorted((root / "frames").rglob("*.jpg")):
        h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    res = CliRunner().invoke(
        main,
        ["synth", str(root), "--videos", "6", "--seed", "3", "--height", "128", "-q", "-j", "2"],
    )
    assert res.exit_code == 0, res.output
    return root


def test_layout_is_exactly_the_contract(synth_root):
    names = {p.name for p in synth_root.iterdir()}
    assert names == {"frames", "Annotations", "Synth-HM.h5", "synth_factors.csv"}
    assert sorted(p.name for p in (synth_root / "Annotations").iterdir()) == sorted(
        [
            "FineDiving_coarse_annotation.pkl",
            "FineDiving_fine-grained_annotation.pkl",
            "fine-grained_annotation_aqa.pkl",
            "Sub_action_Types_Table.pkl",
            "train_split.pkl",
            "test_split.pkl",
        ]
    )
    jpgs = list(synth_root.rglob("*.jpg"))
    assert all(
        p.relative_to(synth_root).parts[0] == "frames" and len(p.relative_to(synth_root).parts) == 4
        for p in jpgs
    )
    assert list(synth_root.rglob("*.h5")) == [synth_root / "Synth-HM.h5"]
    samples = load_finediving(synth_root / "Annotations", synth_root / "frames")
    assert len(samples) == 6
    assert {s.split for s in samples} <= {"train", "test"}
    with MaskStore(synth_root / "Synth-HM.h5") as st:
        for s in samples:
            files = s.frame_files()
            assert len(files) == len(s.frame_labels) == st.info(s.id).num_frames
            fi = st.frame_index(s.id, "gtm")
            assert fi.tolist() == [f for f, _ in files]
            assert st.info(s.id).action_type == s.action_type
            # transitions are the last frame of each step, as in FineDiving
            lab = s.frame_labels
            for t in s.step_transitions:
                assert lab[t] != lab[t + 1]
            assert s.final_score == final_score(s.judge_scores, s.difficulty)
    assert validate_store(synth_root / "Synth-HM.h5") == []


def test_deterministic(synth_root, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "synth",
            str(tmp_path),
            "--videos",
            "6",
            "--seed",
            "3",
            "--height",
            "128",
            "-q",
            "-j",
            "1",
        ],
    )
    assert res.exit_code == 0
    assert _digest(tmp_path) == _digest(synth_root)
    a = (tmp_path / "Annotations" / "fine-grained_annotation_aqa.pkl").read_bytes()
    assert a == (synth_root / "Annotations" / "fine-grained_annotation_aqa.pkl").read_bytes()
    res = CliRunner().invoke(main, ["synth", str(tmp_path), "--videos", "2", "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output


def test_masks_match_the_figure():
    spec = make_specs(4, 11)[0]
    areas, labels = [], []
    for frame, mask, label in render_clip(spec, height=128):
        assert frame.shape[:2] == mask.shape and set(np.unique(mask)) <= {0, 1}
        areas.append(int(mask.sum()))
        labels.append(label)
        if mask.any():
            # the figure's pixels differ from the plain venue: the mask sits on the athlete
            ys, xs = np.nonzero(mask)
            assert frame[ys, xs].std() > 0
    assert labels[0] == spec.dive.labels[0] and labels[-1] == 36
    assert max(areas) > 50  # the athlete is visible
    assert areas[-1] == 0 or areas[-1] < max(areas) / 2  # submerged at the end


def test_scores_follow_the_factors():
    rng = np.random.default_rng(0)
    good = {f: 1.0 for f in FACTORS}
    bad = {f: 0.0 for f in FACTORS}
    g = [final_score(judge_scores(good, 7, rng), 3.0) for _ in range(20)]
    b = [final_score(judge_scores(bad, 7, rng), 3.0) for _ in range(20)]
    assert min(g) > max(b)
    for f in FACTORS:  # each factor alone moves the score
        hi = {**bad, f: 1.0}
        s_hi = np.mean([final_score(judge_scores(hi, 7, rng), 3.0) for _ in range(50)])
        s_lo = np.mean([final_score(judge_scores(bad, 7, rng), 3.0) for _ in range(50)])
        assert s_hi > s_lo + 2
    assert final_score([7, 7.5, 8, 8, 8.5, 9, 10], 2.0) == 2.0 * (8 + 8 + 8.5)
    assert final_score([7, 8, 9], 3.0) == 72.0


def test_test_share_sets_the_split_per_dive_number():
    """``--test-share`` moves that share of every dive number's clips (rounded) to the test
    split, keeps a training exemplar for each, and leaves the default split as it was."""
    from collections import Counter

    from hmtools.datasets.synth import _split, generate

    specs = make_specs(280, 1)
    per_type = Counter(s.dive.number for s in specs)
    by_key = {s.key: s.dive.number for s in specs}
    for share in (0.25, 4 / 7, 0.0):
        train, test = _split(specs, np.random.default_rng(2), share)
        want = {t: min(n - 1, int(n * share + 0.5)) for t, n in per_type.items()}
        assert Counter(by_key[k] for k in test) == +Counter(want)
        assert len(train) + len(test) == 280 and not set(train) & set(test)
        assert {by_key[k] for k in test} <= {by_key[k] for k in train}
    assert len(_split(specs, np.random.default_rng(2), 4 / 7)[1]) > 150  # 121 train / 159 test
    # the default split is the one every earlier dataset got (same draws, same share)
    assert _split(specs, np.random.default_rng(2)) == _split(specs, np.random.default_rng(2), 0.25)
    with pytest.raises(InputError, match="test-share"):
        generate("/nonexistent/never-written", 4, test_share=1.0)


def test_synth_cli_test_share(tmp_path):
    """``hmtools synth --test-share`` writes its split into the official split pickles."""
    res = CliRunner().invoke(
        main,
        [
            "synth",
            str(tmp_path),
            "-n",
            "8",
            "--height",
            "64",
            "--test-share",
            "0.5",
            "-q",
            "-j",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    samples = load_finediving(tmp_path / "Annotations", tmp_path / "frames")
    splits = [s.split for s in samples]
    assert splits.count("test") >= 3 and splits.count("train") >= 3  # 2 dive numbers, 4 each
    bad = CliRunner().invoke(main, ["synth", str(tmp_path / "x"), "-n", "2", "--test-share", "1"])
    assert bad.exit_code != 0 and "test-share" in bad.output
