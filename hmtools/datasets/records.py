"""One record type for every AQA dataset, and the readers of the official annotation files.

- FineDiving: six pickles in ``Annotations/`` (``fine-grained_annotation_aqa.pkl`` is what the
  official trainers read; the coarse pickle adds judges and start/end frames), splits
  ``train_split.pkl``/``test_split.pkl``; frames ``<root>/<video_name>/<clip_idx>/<frame>.jpg``.
- MTL-AQA: ``final_annotations_dict[_with_dive_number].pkl`` keyed ``(video, clip)``, splits
  ``train_split_0.pkl``/``test_split_0.pkl``; frames are whole-broadcast folders
  ``<root>/<video:02d>/*.jpg`` and a sample is the L sorted files before position ``end_frame``
  (the official loader's ``image_list[end_frame - L + i]``).
- AQA-7: ``Split_4/split_4_{train,test}_list.mat`` rows ``[class_idx, video_idx, score]``; frames
  ``<root>/<sport>-out/<video:03d>/img_<frame:05d>.jpg``, a sample is ``img_00001 .. img_L``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmtools.errors import InputError
from hmtools.masks.frames import frame_numbers, list_images
from hmtools.masks.schema import VideoId, format_video_id, normalize_video_id
from hmtools.safe_pickle import load_pickle

DATASETS = ("finediving", "mtl-aqa", "aqa7")
AQA7_CLASSES = (
    "diving",
    "gym_vault",
    "ski_big_air",
    "snowboard_big_air",
    "sync_diving_3m",
    "sync_diving_10m",
)
DEFAULT_LENGTH = 103  # frames per sample (the paper's L)


@dataclass
class Sample:
    """One annotated sample (annotation key) of any dataset."""

    dataset: str
    id: VideoId
    split: str  # "train", "test" or "" (in no split file)
    action_type: str  # FineDiving/MTL-AQA dive number, AQA-7 sport class
    final_score: float
    difficulty: float | None = None
    judge_scores: list[float] | None = None
    frame_labels: np.ndarray | None = None  # per-frame sub-action codes (FineDiving)
    step_transitions: np.ndarray | None = None  # last frame index of each step but the last
    start_frame: int | None = None
    end_frame: int | None = None
    frames_dir: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return format_video_id(self.id)

    def frame_files(self, length: int = DEFAULT_LENGTH, margin: int = 0) -> list[tuple[int, Path]]:
        """``(frame number, path)`` of the sample's frames, sorted.

        FineDiving: every frame of the clip folder. MTL-AQA: the ``length`` files before sorted
        position ``end_frame`` (plus ``margin`` on each side for temporal shifts). AQA-7:
        ``img_00001 .. img_<length + margin>``. Raises :class:`InputError` if frames are missing.
        """
        if self.frames_dir is None:
            raise InputError(f"sample {self.name}: no frame folder (pass --data-root)")
        files = _listing(self.frames_dir)
        if not files:
            raise InputError(f"sample {self.name}: no frames in {self.frames_dir}")
        if self.dataset == "mtl-aqa":
            end = int(self.end_frame or 0)
            lo, hi = max(0, end - length - margin), end + margin
            if end > len(files) or end - length < 0:
                raise InputError(
                    f"sample {self.name}: needs sorted frames {end - length}..{end - 1} of "
                    f"{self.frames_dir}, which has {len(files)}"
                )
            return files[lo : min(hi, len(files))]
        if self.dataset == "aqa7":
            if len(files) < length:
                raise InputError(
                    f"sample {self.name}: {self.frames_dir} has {len(files)} frames, needs {length}"
                )
            return files[: length + margin]
        return files


@functools.lru_cache(maxsize=4096)
def _listing(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    imgs = list_images(folder)
    nums = frame_numbers([p.name for p in imgs])
    return sorted(zip(nums, imgs, strict=True))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: missing ({what})")
    return path


def _keys(obj: object, path: Path) -> list[tuple]:
    if not isinstance(obj, (list, tuple)):
        raise InputError(f"{path}: a split file must hold a list of keys, not {type(obj).__name__}")
    out = []
    for k in obj:
        if not isinstance(k, tuple):
            raise InputError(f"{path}: split entry {k!r} is not a (video, clip) tuple")
        out.append(tuple(int(x) if isinstance(x, np.integer) else x for x in k))
    return out


def _dict(obj: object, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a dict keyed by sample, got {type(obj).__name__}")
    return obj


def _split_of(keys: Iterable, train: list, test: list) -> dict:
    tr, te = set(train), set(test)
    return {k: ("train" if k in tr else "test" if k in te else "") for k in keys}


def load_finediving(
    annotations: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[Sample]:
    """Read the official FineDiving annotation folder (see module doc)."""
    ann = Path(annotations)
    aqa_path = _need(ann / "fine-grained_annotation_aqa.pkl", "FineDiving per-sample annotation")
    aqa = _dict(load_pickle(aqa_path), aqa_path)
    coarse_path = ann / "FineDiving_coarse_annotation.pkl"
    coarse = _dict(load_pickle(coarse_path), coarse_path) if coarse_path.exists() else {}
    train = _keys(
        load_pickle(_need(ann / "train_split.pkl", "train split")), ann / "train_split.pkl"
    )
    test = _keys(load_pickle(_need(ann / "test_split.pkl", "test split")), ann / "test_split.pkl")
    splits = _split_of(aqa, train, test)
    for k in train + test:
        if k not in aqa:
            raise InputError(f"{ann}: split key {k!r} has no entry in {aqa_path.name}")
    out = []
    for key, v in aqa.items():
        where = f"{aqa_path}: sample {key!r}"
        if not (isinstance(key, tuple) and len(key) == 2):
            raise InputError(f"{where}: key is not a (video_name, clip_idx) tuple")
        if not (isinstance(v, (list, tuple)) and len(v) >= 5):
            raise InputError(
                f"{where}: expected [dive_number, score, difficulty, transits, labels]"
            )
        number, score, dd, trans, labels = v[:5]
        c = coarse.get(key, {})
        vid = normalize_video_id((str(key[0]), int(key[1])))
        out.append(
            Sample(
                dataset="finediving",
                id=vid,
                split=splits[key],
                action_type=str(number),
                final_score=float(score),
                difficulty=float(dd),
                judge_scores=[float(x) for x in c["judge_scores"]] if "judge_scores" in c else None,
                frame_labels=np.asarray(labels, np.int64),
                step_transitions=np.asarray(trans, np.int64),
                start_frame=int(c["start_frame"]) if "start_frame" in c else None,
                end_frame=int(c["end_frame"]) if "end_frame" in c else None,
                frames_dir=Path(data_root) / vid[0] / str(vid[1]) if data_root else None,
            )
        )
    return out


_MTL_FILES = ("final_annotations_dict_with_dive_number.pkl", "final_annotations_dict.pkl")


def load_mtl_aqa(
    annotations: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[Sample]:
    """Read MTL-AQA's annotation dict and split 0 (see module doc)."""
    ann = Path(annotations)
    path = next((ann / f for f in _MTL_FILES if (ann / f).exists()), None)
    if path is None:
        raise InputError(f"{ann}: no {' or '.join(_MTL_FILES)}")
    d = _dict(load_pickle(path), path)
    train = _keys(
        load_pickle(_need(ann / "train_split_0.pkl", "train split")), ann / "train_split_0.pkl"
    )
    test = _keys(
        load_pickle(_need(ann / "test_split_0.pkl", "test split")), ann / "test_split_0.pkl"
    )
    splits = _split_of(d, train, test)
    out = []
    for key, v in d.items():
        where = f"{path}: sample {key!r}"
        if not isinstance(v, dict):
            raise InputError(f"{where}: value is not a dict")
        missing = [k for k in ("end_frame", "final_score", "difficulty") if k not in v]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        vid = normalize_video_id((int(key[0]), int(key[1])))
        number = v.get("dive_number")
        out.append(
            Sample(
                dataset="mtl-aqa",
                id=vid,
                split=splits[key],
                action_type=str(number)
                if number is not None
                else f"DD{float(v['difficulty']):.1f}",
                final_score=float(v["final_score"]),
                difficulty=float(v["difficulty"]),
                judge_scores=[float(x) for x in v["judge_scores"]] if "judge_scores" in v else None,
                start_frame=int(v["start_frame"]) if "start_frame" in v else None,
                end_frame=int(v["end_frame"]),
                frames_dir=Path(data_root) / f"{vid[0]:02d}" if data_root else None,
                extra={
                    k: v[k]
                    for k in (
                        "position",
                        "armstand",
                        "rotation_type",
                        "ss_no",
                        "tw_no",
                        "primary_view",
                    )
                    if k in v
                },
            )
        )
    return out


def load_aqa7(
    annotations: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[Sample]:
    """Read AQA-7's Split-4 ``.mat`` lists (``annotations`` is the folder holding ``Split_4``
    or ``Split_4`` itself)."""
    import scipy.io

    ann = Path(annotations)
    split_dir = ann if ann.name == "Split_4" else ann / "Split_4"
    out = []
    for split, var in (("train", "consolidated_train_list"), ("test", "consolidated_test_list")):
        path = _need(split_dir / f"split_4_{split}_list.mat", f"AQA-7 {split} list")
        try:
            mat = scipy.io.loadmat(path)
        except Exception as e:  # scipy raises several types on a bad file
            raise InputError(f"{path}: not a readable .mat file ({e})") from None
        if var not in mat:
            raise InputError(f"{path}: variable {var!r} missing")
        rows = np.asarray(mat[var])
        if rows.ndim != 2 or rows.shape[1] < 3:
            raise InputError(f"{path}: {var} must be rows [class_idx, video_idx, score]")
        for r in rows:
            ci, vi = int(r[0]), int(r[1])
            if not 1 <= ci <= len(AQA7_CLASSES):
                raise InputError(f"{path}: class index {ci} outside 1..{len(AQA7_CLASSES)}")
            cls = AQA7_CLASSES[ci - 1]
            out.append(
                Sample(
                    dataset="aqa7",
                    id=normalize_video_id((cls, vi)),
                    split=split,
                    action_type=cls,
                    final_score=float(r[2]),
                    frames_dir=Path(data_root) / f"{cls}-out" / f"{vi:03d}" if data_root else None,
                    extra={"class_idx": ci},
                )
            )
    return out


def load_dataset(
    dataset: str, annotations: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[Sample]:
    """Samples of ``dataset`` ("finediving", "mtl-aqa", "aqa7")."""
    readers = {"finediving": load_finediving, "mtl-aqa": load_mtl_aqa, "aqa7": load_aqa7}
    if dataset not in readers:
        raise InputError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    return readers[dataset](annotations, data_root)
