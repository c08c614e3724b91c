"""PyTorch datasets that feed Uni-FineParser: clips (frames, mask targets, soft labels, scores),
exemplar selection, and training pairs.

Randomness: every random choice of item ``i`` in epoch ``e`` comes from
``np.random.default_rng([seed, e, i])``, so a run is reproducible whatever the number of
workers, and a resumed run only needs the epoch number (no generator state to carry).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hmtools import interpretations as interp
from hmtools.datasets.records import Sample
from hmtools.errors import InputError
from hmtools.imageio import read_image
from hmtools.masks import MaskStore, format_video_id, rle

log = logging.getLogger(__name__)

SHIFTS = {"finediving": (-3, 0), "mtl-aqa": (-3, 3), "aqa7": (-3, 3)}
MASK_FALLBACKS = ("error", "nearest", "empty")


@dataclass
class ClipConfig:
    """How a clip becomes a tensor. Defaults are the paper's: L=103 frames -> N=20 snippets of
    beta=8 frames with stride alpha=5, frames resized to 455x256 and cropped to 224x224."""

    length: int = 103
    num_snippets: int = 20
    snippet_len: int = 8
    stride: int = 5
    resize_hw: tuple[int, int] = (256, 455)
    crop: int = 224
    num_queries: int = 6
    sigma: float = interp.SOFT_LABEL_SIGMA
    anchor: str = "centre"
    stage2_stride: int = 4  # spatial stride of I3D at the SAP stage (Stage 2: 224 -> 56)
    sap_temporal_stride: int = 2  # frames per step of A in time (Stage 2: 2, Eq. 3 pairs)
    shift: tuple[int, int] | None = None  # None: the dataset's default (SHIFTS)

    def __post_init__(self) -> None:
        need = (self.num_snippets - 1) * self.stride + self.snippet_len
        if need > self.length:
            raise ValueError(
                f"{self.num_snippets} snippets of {self.snippet_len} frames at "
                f"stride {self.stride} need {need} frames, clips have {self.length}"
            )
        if self.snippet_len % 2:
            raise ValueError("snippet_len must be even (Eq. 3 pairs adjacent frames)")

    @property
    def stage2_hw(self) -> tuple[int, int]:
        return (self.crop // self.stage2_stride, self.crop // self.stage2_stride)

    def snippet_starts(self) -> np.ndarray:
        return np.arange(self.num_snippets) * self.stride


def _read_frame(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    img = read_image(path, cv2.IMREAD_COLOR)  # a damaged JPEG is an error naming the file
    if img.shape[:2] != size_hw:
        img = cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)
    return img


class ClipDataset(Dataset):
    """One item per sample: ``video`` float [3, L, crop, crop] in [-1, 1] (RGB), and, when a
    mask layer is given and the item is for training, ``mask_target`` [N, beta/2, h2, w2]
    (Eq. 3). Soft labels ``soft_labels`` [L_q, N] and ``transitions`` [2] when the dataset has
    step labels. Training items get a random shift, crop and flip; test items a centre crop.
    """

    def __init__(
        self,
        samples: list[Sample],
        cfg: ClipConfig,
        *,
        train: bool,
        masks_file: str | os.PathLike | None = None,
        layer: str | None = None,
        mask_fallback: str = "error",
        seed: int = 0,
    ):
        if mask_fallback not in MASK_FALLBACKS:
            raise ValueError(f"mask_fallback must be one of {MASK_FALLBACKS}")
        self.samples = samples
        self.cfg = cfg
        self.train = train
        self.masks_file = Path(masks_file) if masks_file else None
        self.layer = layer
        self.mask_fallback = mask_fallback
        self.seed = seed
        self.epoch = 0
        self._store: MaskStore | None = None
        self._store_pid: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    # -- masks ------------------------------------------------------------------------------
    @property
    def store(self) -> MaskStore:
        if self._store is None or self._store_pid != os.getpid():  # h5py handles do not fork
            self._store = MaskStore(self.masks_file)
            self._store_pid = os.getpid()
        return self._store

    def _masks_for(self, s: Sample, frames: list[int]) -> np.ndarray:
        """0/1 masks at the given frame numbers, [L, H, W] (fallback per ``mask_fallback``)."""
        data = self.store.read_layer(s.id, self.layer, min(frames), max(frames) + 1)
        info = self.store.info(s.id)
        have = {int(f): i for i, f in enumerate(data.frame_index)}
        idx = []
        for f in frames:
            if f in have:
                idx.append(have[f])
            elif self.mask_fallback == "error" or (self.mask_fallback == "nearest" and not have):
                raise InputError(
                    f"{self.masks_file}: video {s.name} has no {self.layer!r} mask for frame {f}"
                    " (pass --mask-fallback nearest|empty to train anyway)"
                )
            elif self.mask_fallback == "nearest":
                keys = np.array(sorted(have))
                idx.append(have[int(keys[np.argmin(np.abs(keys - f))])])
            else:
                idx.append(-1)
        decoded = rle.decode(
            [data.rles[i] for i in sorted({i for i in idx if i >= 0})], info.height, info.width
        )
        pos = {i: k for k, i in enumerate(sorted({i for i in idx if i >= 0}))}
        out = np.zeros((len(frames), info.height, info.width), np.uint8)
        for j, i in enumerate(idx):
            if i >= 0:
                out[j] = decoded[pos[i]]
        return out

    # -- items ------------------------------------------------------------------------------
    def positions(
        self, s: Sample, rng: np.random.Generator
    ) -> tuple[list[tuple[int, Path]], np.ndarray]:
        """The sample's frame files and the sorted positions of its L sampled frames."""
        cfg = self.cfg
        lo, hi = cfg.shift or SHIFTS.get(s.dataset, (0, 0))
        shift = int(rng.integers(lo, hi + 1)) if self.train else 0
        if s.dataset == "finediving":
            files = s.frame_files(cfg.length)
            pos = interp.finediving_positions(
                len(files), files[0][0], files[-1][0], cfg.length, shift
            )
            return files, pos
        margin = max(abs(lo), abs(hi))
        files = s.frame_files(cfg.length, margin=margin)
        if s.dataset == "mtl-aqa":
            end = int(s.end_frame) - max(0, int(s.end_frame) - cfg.length - margin)  # in `files`
        else:
            end = cfg.length
        return files, interp.window_positions(end, cfg.length, shift, len(files))

    def labels_at(self, s: Sample, pos: np.ndarray) -> np.ndarray | None:
        if s.frame_labels is None:
            return None
        return s.frame_labels[np.clip(pos, 0, len(s.frame_labels) - 1)]

    def __getitem__(self, i: int) -> dict:
        return self.item(i)

    def item(self, i: int, video: bool = True) -> dict:
        """Sample ``i`` in the current epoch; ``video=False`` leaves out the frames (not even
        read: the frozen-prefix cache already holds them) and keeps everything else identical
        (the augmentation's random draws do not depend on the pixels)."""
        s = self.samples[i]
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, self.epoch, i])
        files, pos = self.positions(s, rng)
        frame_numbers = [files[p][0] for p in pos]
        H, W = cfg.resize_hw
        if self.train:
            y0 = int(rng.integers(0, H - cfg.crop + 1))
            x0 = int(rng.integers(0, W - cfg.crop + 1))
            flip = bool(rng.random() < 0.5)
        else:
            y0, x0, flip = (H - cfg.crop) // 2, (W - cfg.crop) // 2, False
        item: dict = {
            "index": i,
            "id": format_video_id(s.id),
            "score": torch.tensor(s.final_score, dtype=torch.float32),
            "difficulty": torch.tensor(s.difficulty if s.difficulty else 1.0, dtype=torch.float32),
        }
        if video:
            imgs = {p: _read_frame(files[p][1], cfg.resize_hw) for p in sorted(set(pos.tolist()))}
            clip = np.stack([imgs[p] for p in pos])  # L, H, W, 3 (BGR)
            clip = clip[:, y0 : y0 + cfg.crop, x0 : x0 + cfg.crop, ::-1]  # crop, BGR -> RGB
            if flip:
                clip = clip[:, :, ::-1]
            item["video"] = torch.from_numpy(
                np.ascontiguousarray(clip.transpose(3, 0, 1, 2)).astype(np.float32) / 127.5 - 1.0
            )
        labels = self.labels_at(s, pos)
        if labels is not None:
            trans = interp.sampled_transitions(labels)
            item["transitions"] = torch.from_numpy(trans)
            item["soft_labels"] = torch.from_numpy(
                interp.temporal_soft_labels(
                    trans, cfg.num_snippets, cfg.stride, cfg.num_queries, cfg.sigma, cfg.anchor
                )
            )
        if self.train and self.masks_file is not None and self.layer:
            m = self._masks_for(s, frame_numbers).astype(np.float32)
            m = np.stack(
                [
                    cv2.resize(x, (W, H), interpolation=cv2.INTER_LINEAR)
                    if x.shape != (H, W)
                    else x
                    for x in m
                ]
            )
            m = m[:, y0 : y0 + cfg.crop, x0 : x0 + cfg.crop]
            if flip:
                m = m[:, :, ::-1]
            targets = [
                interp.mask_target(
                    m[a : a + cfg.snippet_len], cfg.stage2_hw, cfg.sap_temporal_stride
                )
                for a in cfg.snippet_starts()
            ]
            item["mask_target"] = torch.from_numpy(np.stack(targets))
        return item


class ExemplarIndex:
    """Who may serve as exemplar for whom: FineDiving by dive number (``an``) or difficulty
    (``dd``); MTL-AQA by dive number when the file has it, else difficulty; AQA-7 within the
    sport class. Exemplars always come from the training samples."""

    def __init__(self, train_samples: list[Sample], selection: str = "an"):
        if selection not in ("an", "dd"):
            raise ValueError("selection must be 'an' or 'dd'")
        self.selection = selection
        self.train = train_samples
        self.groups: dict[object, list[int]] = {}
        for k, s in enumerate(train_samples):
            self.groups.setdefault(self.group_of(s), []).append(k)
        self._warned: set = set()

    def group_of(self, s: Sample) -> object:
        if s.dataset == "aqa7":
            return s.action_type
        if self.selection == "dd" or (s.dataset == "mtl-aqa" and s.action_type.startswith("DD")):
            return round(float(s.difficulty or 0.0), 2)
        return s.action_type

    def candidates(self, s: Sample) -> list[int]:
        g = self.groups.get(self.group_of(s))
        if g:
            return g
        if s.action_type not in self._warned:
            self._warned.add(s.action_type)
            log.warning(
                "no training exemplar shares %s's group %r: using all training samples",
                s.name,
                self.group_of(s),
            )
        return list(range(len(self.train)))

    def training_exemplar(self, s: Sample, rng: np.random.Generator) -> int:
        """One random training sample of the same group, excluding ``s`` itself if possible."""
        c = [k for k in self.candidates(s) if self.train[k].id != s.id] or self.candidates(s)
        return c[int(rng.integers(len(c)))]

    def test_exemplars(self, s: Sample, m: int, rng: np.random.Generator) -> list[int]:
        """``m`` training exemplars for voting (Eq. 10); fewer if the group is smaller."""
        c = self.candidates(s)
        return [c[k] for k in rng.permutation(len(c))[:m]]


class PairDataset(Dataset):
    """Training pairs (query, exemplar) for contrastive regression."""

    def __init__(self, clips: ClipDataset, exemplars: ExemplarIndex):
        self.clips = clips
        self.exemplars = exemplars
        self._row = {s.id: k for k, s in enumerate(clips.samples)}

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def exemplar_row(self, i: int, epoch: int) -> int:
        """The row (in ``clips``) of query ``i``'s training exemplar in ``epoch``."""
        s = self.clips.samples[i]
        rng = np.random.default_rng([self.clips.seed, epoch, i, 1])
        k = self.exemplars.training_exemplar(s, rng)
        return self._row[self.exemplars.train[k].id]

    def __getitem__(self, i: int) -> tuple[dict, dict]:
        return self.clips[i], self.clips[self.exemplar_row(i, self.clips.epoch)]
