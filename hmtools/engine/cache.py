"""Frozen-prefix cache: train on clips whose frozen I3D part was computed once.

With ``ModelConfig.prefix_frozen`` (part of the I3D below the SAP frozen: in the ``small``
config Stages 1-2 and the 14 x 14 part of Stage 3) the prefix of a clip -- the frozen I3D modules'
output and the SVE's central frames -- depends only on the clip's augmentation, not on the
training. ``TrainConfig.cache_views = K`` gives each
training clip K fixed augmented views (view ``v`` = the augmentation the clip would get in epoch
``v``: crop, flip, temporal shift); epoch ``e`` uses view ``e mod K`` while the exemplar pairing
still changes every epoch. A view is computed the first time it is needed (so a resumed run
rebuilds what it uses) and kept in memory; test-time (centre-crop) prefixes are cached the same
way for every evaluation. Results equal the uncached model on the same views: the cache only
skips recomputing a function of fixed weights.

The win on CPU: the frozen part is ~71 % of the small config's I3D forward (and needs no
backward), so after the first K epochs an epoch costs the trainable 7 x 7 part of Stage 3, the
SAP, Stage 4, SVE, TAP and FineReg (``benchmarks/train_step.py`` measures it).

Memory: a cached view of the small config holds 0.75 MB, but under glibc's default allocator a
process grew by ~9 MB per cached clip (measured on 30-40 clips: the clip's ~10 MB of decoded
frames and activations are freed into the heap, the long-lived prefix allocated after them pins
the heap's top, and the dynamic mmap threshold has risen past their size). 420 training clips x 2
views then took 7.7 GB instead of ~1.5. Prefixes are therefore computed with glibc's mmap
threshold at 128 KiB (every large buffer of that computation, and the kept prefix, its own mapping
returned or kept whole) and the threshold is set to glibc's ceiling (32 MiB) afterwards for the
training steps, whose speed it keeps (the threshold left at 128 KiB made a step ~35 % slower):
~1 MB per cached clip (:func:`compact_allocations`; a no-op off glibc). That held while prefixes
were computed one after another; in training, a prefix computed between two steps was placed by
malloc in a chunk a step had freed, in the middle of the heap, and the next steps' buffers grew
the heap around it. Measured on 135 training clips of the small config (one process each, the
growth from 58 to 269 cached clip views): 3.7 MB more per clip view, ~5x its 0.75 MB (the
process grew 1.31 GB over 2 epochs x 2 views). Each view's prefixes therefore live in one slab
allocated for all clips at once (its own mapping; a row is touched only when its clip is cached)
and a prefix is copied into its row: 0.67 MB more per clip view, its bytes (the same run grew
0.61 GB, ~0.4 GB of it Adam's state and the steps' buffers).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Iterator

import torch

from hmtools.datasets.clips import ClipDataset
from hmtools.errors import InputError
from hmtools.masks import format_video_id
from hmtools.models.uni_fineparser import Prefix, UniFineParser

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_SMALL_MMAP, _LARGE_MMAP = 128 * 1024, 32 * 1024 * 1024
# augmented views cached per training clip when TrainConfig.cache_views is None
DEFAULT_VIEWS = 2


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None


_LIBC = _glibc()


@contextlib.contextmanager
def compact_allocations() -> Iterator[None]:
    """Inside: buffers of 128 KiB and more are their own mappings (nothing long-lived is left
    between freed temporaries on the heap); after: the mmap threshold at glibc's ceiling, 32 MiB
    (module doc: what it saves and costs). A no-op where the C library is not glibc."""
    if _LIBC is None:
        yield
        return
    _LIBC.mallopt(_M_MMAP_THRESHOLD, _SMALL_MMAP)
    try:
        yield
    finally:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _LARGE_MMAP)


class PrefixCache:
    """Items of ``clips`` (a :class:`ClipDataset`) with ``video`` replaced by its frozen
    ``prefix`` (a batch-of-one :class:`Prefix`), per ``(index, view)``."""

    def __init__(
        self,
        model: UniFineParser,
        clips: ClipDataset,
        views: int = 1,
        device: torch.device | str = "cpu",
        shared: dict | None = None,
    ):
        if not model.cfg.prefix_frozen:
            raise InputError(
                f"config {model.cfg.name!r}: caching needs the I3D frozen below the SAP "
                f"({model.cfg.sap_stage}); it freezes nothing there (frozen_until="
                f"{model.cfg.frozen_until!r})"
            )
        if views < 1:
            raise ValueError("views must be at least 1")
        self.model = model
        self.clips = clips
        self.views = views
        self.device = torch.device(device)
        self._store: dict[tuple[int, int], dict] = {}
        self._slabs: dict[tuple[int, str], torch.Tensor] = {}
        # prefixes by (train, seed, view, video id, clip and model settings): two runs of one
        # model config on the same clips (gtm and pm in `hmtools experiment`) share them; the
        # rest of an item (its mask target above all) is always the run's own
        self.shared = shared if shared is not None else {}

    def __len__(self) -> int:
        return len(self._store)

    def item(self, i: int, epoch: int = 0) -> dict:
        """Sample ``i`` as it is seen in ``epoch`` (view ``epoch mod views``)."""
        view = epoch % self.views
        key = (i, view)
        entry = self._store.get(key)
        if entry is None:
            self.clips.set_epoch(view)
            c = self.model.cfg
            skey = (
                self.clips.train,
                self.clips.seed,
                view,
                format_video_id(self.clips.samples[i].id),
                repr(self.clips.cfg),
                (c.cached_modules, c.i3d_width, c.use_sve),
            )
            prefix = self.shared.get(skey)
            with compact_allocations():
                it = self.clips.item(i, video=prefix is None)  # frames only to compute a prefix
                if prefix is None:
                    with torch.no_grad():
                        p = self.model.encode_prefix(it["video"][None].to(self.device))
                    frames = None
                    if p.frames is not None:  # exactly the clip's uint8 pixels: store them so
                        u8 = ((p.frames + 1.0) * 127.5).round().to(torch.uint8).cpu()
                        frames = self._row(view, "frames", i, u8)
                    features = self._row(view, "features", i, p.features.cpu())
                    prefix = self.shared[skey] = Prefix(features, frames)
                    del p
                it.pop("video", None)
            entry = {k: v for k, v in it.items() if k != "video"}
            entry["prefix"] = prefix
            self._store[key] = entry
            if len(self._store) == 1:
                size = prefix.features.numel() * prefix.features.element_size()
                size += 0 if prefix.frames is None else prefix.frames.numel()
                full = size * self.views * len(self.clips)
                log.info(
                    "prefix cache: %.1f MB per clip view, %.2f GB for %d clips x %d views",
                    size / 1e6,
                    full / 1e9,
                    len(self.clips),
                    self.views,
                )
        return entry

    def _row(self, view: int, name: str, i: int, t: torch.Tensor) -> torch.Tensor:
        """``t`` copied into row ``i`` of its view's slab for ``name``: one allocation per view for
        all clips, so the kept prefixes do not sit between the training steps' freed buffers
        (module doc). A clip whose prefix has another shape than the slab's keeps its own copy."""
        slab = self._slabs.get((view, name))
        if slab is None:
            slab = torch.empty((len(self.clips), *t.shape), dtype=t.dtype)
            self._slabs[view, name] = slab
        if slab.shape[1:] != t.shape or slab.dtype != t.dtype:
            return t.clone()
        slab[i].copy_(t)
        return slab[i]

    def prefix(self, entries: list[dict], device: torch.device | str) -> Prefix:
        """The batch prefix of some cached items, on ``device``, frames back in [-1, 1]."""
        feats = torch.cat([e["prefix"].features for e in entries], 0)
        frames = None
        if entries[0]["prefix"].frames is not None:
            u8 = torch.cat([e["prefix"].frames for e in entries], 0)
            frames = u8.to(device).float() / 127.5 - 1.0
        return Prefix(feats.to(device), frames)


def collate(cache: PrefixCache, entries: list[dict], device: torch.device | str) -> dict:
    """A training batch like the DataLoader's, with ``prefix`` in place of ``video``."""
    out: dict = {"prefix": cache.prefix(entries, device), "id": [e["id"] for e in entries]}
    for k in ("score", "difficulty", "mask_target", "soft_labels"):
        if k in entries[0]:
            out[k] = torch.stack([e[k] for e in entries]).to(device)
    out["index"] = torch.tensor([e["index"] for e in entries])
    return out
