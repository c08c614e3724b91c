"""SAM 2's video predictor (the ``sam2`` package, optional extra ``[sam2]``) as a pseudo-mask and
propagation engine: ``--segmenter sam2``.

- ``pseudo-mask``: the first box (prompts file, or the athlete finder's motion box) goes to SAM 2
  on its frame; SAM 2 propagates it through the clip with its own memory, forward and, when the
  prompt frame is not the first, backward from it.
- ``propagate``: every corrected mask becomes a SAM 2 conditioning frame (``add_new_mask``);
  one pass forward from the first corrected frame and one backward from it give every frame a
  mask, each frame attending to the ``max_cond_frames`` corrected frames nearest to it in time.

Score of a frame: SAM 2's predicted IoU of the mask it kept times the probability that the
object is present, ``sigmoid(object_score_logits)`` (a corrected frame: 1 x its object score).
An empty mask scores what the model says: an athlete who left the frame is a confident empty
mask, so empty masks are not forced to score 0 here.

Memory does not grow with the clip's length (SAM 2's own predictor loads every frame, resized
to 1024 x 1024 float32 -- 12 MB a frame -- and keeps every frame's memory): frames are resized
and normalised one at a time, when the model asks for them, from the frames already in memory;
the tracking state lives on the CPU (``offload_state_to_cpu``); and a frame's outputs are
dropped once they are further behind the frame being tracked than SAM 2 ever looks back (its
``num_maskmem`` memory frames and ``max_obj_ptrs_in_encoder`` object pointers), so the state is
a sliding window over the clip plus the conditioning frames. The state is released and CUDA's
cache emptied after every video. On CUDA the model runs under bfloat16 autocast (SAM 2's own
recommendation); elsewhere in float32.

The predictor's inference state is built here (:func:`init_state`) with the keys SAM 2 1.1's
``init_state`` makes (a test compares them with the real function's), because that function
only reads videos from files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from hmtools.devices import check_device
from hmtools.errors import InputError

log = logging.getLogger(__name__)

SAM2_DOWNLOAD = "https://github.com/facebookresearch/sam2#download-checkpoints"
SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
# the official SAM 2.1 checkpoints and the config each needs (configs ship in the sam2 package)
CHECKPOINTS: dict[str, str] = {
    "sam2.1_hiera_tiny.pt": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small.pt": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus.pt": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large.pt": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
# short names accepted by --sam2-config
CONFIG_ALIASES: dict[str, str] = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
# what build_sam2_video_predictor(apply_postprocessing=True) sets on top of a config
POSTPROCESSING = {
    "model._target_": "sam2.sam2_video_predictor.SAM2VideoPredictor",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
    "model.binarize_mask_from_pts_for_mem_enc": True,
}
# SAM 2 fills holes of up to 8 low-res pixels with its CUDA extension (sam2._C); a sam2 built
# without it (SAM2_BUILD_CUDA=0, the CPU install) skips that step with a warning on every frame,
# so it is only asked for when the extension is there
FILL_HOLE_AREA = 8
MISSING = (
    "--segmenter sam2 needs the sam2 package: pip install 'hmtools[sam2]' (it builds with the "
    "installed torch: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0)"
)


def checkpoint_table() -> str:
    """The official checkpoints, where to get them and the config of each (for messages)."""
    rows = [f"  {SAM2_BASE_URL}{ck}  ->  --sam2-config {cfg}" for ck, cfg in CHECKPOINTS.items()]
    return "\n".join(rows)


def _require_sam2() -> None:
    try:
        import sam2  # noqa: F401
    except ImportError:
        raise InputError(MISSING) from None


def config_path(name: str | Path | None, checkpoint: str | Path | None = None) -> Path:
    """The YAML file of a SAM 2 config: a file path, a name inside the sam2 package
    (``configs/sam2.1/sam2.1_hiera_t.yaml``, with or without ``.yaml``), a short name
    (``tiny``, ``small``, ``base_plus``, ``large``) or, when ``name`` is None, the config of an
    official ``checkpoint`` file name."""
    _require_sam2()
    import sam2

    pkg = Path(sam2.__file__).parent
    if name is None:
        ck = Path(checkpoint).name if checkpoint else ""
        if ck not in CHECKPOINTS:
            raise InputError(
                f"--sam2-config is needed: {ck or 'the checkpoint'} is not an official SAM 2.1 "
                f"checkpoint name. The official checkpoints and their configs:\n"
                f"{checkpoint_table()}"
            )
        name = CHECKPOINTS[ck]
    s = str(name)
    s = CONFIG_ALIASES.get(s, s)
    for cand in (Path(s), pkg / s, pkg / f"{s}.yaml", pkg / "configs" / "sam2.1" / f"{s}.yaml"):
        if cand.is_file():
            return cand
    names = sorted(str(p.relative_to(pkg)) for p in (pkg / "configs").rglob("*.yaml"))
    raise InputError(
        f"SAM 2 config {name!r} not found: a YAML file, a short name "
        f"({', '.join(CONFIG_ALIASES)}) or one of the sam2 package's: {', '.join(names)}"
    )


def build_predictor(
    config: str | Path | None,
    checkpoint: str | Path | None,
    device: str = "cpu",
    overrides: dict | None = None,
) -> object:
    """A ``SAM2VideoPredictor`` from a config (see :func:`config_path`) and a checkpoint (``None``:
    random weights, for tests), with SAM 2's own post-processing settings. Reads the YAML with
    OmegaConf and instantiates it with hydra's ``instantiate`` (no global hydra state)."""
    _require_sam2()
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(
            f"{checkpoint}: SAM 2 checkpoint not found (hmtools never downloads weights). "
            f"Download one of the official checkpoints ({SAM2_DOWNLOAD}) and pass its config:\n"
            f"{checkpoint_table()}"
        )
    path = config_path(config, checkpoint)
    cfg = OmegaConf.load(path)
    post = dict(POSTPROCESSING)
    if importlib.util.find_spec("sam2._C") is not None:
        post["model.fill_hole_area"] = FILL_HOLE_AREA
    for k, v in {**post, **(overrides or {})}.items():
        OmegaConf.update(cfg, k, v, force_add=True)
    OmegaConf.resolve(cfg)
    try:
        model = instantiate(cfg.model, _recursive_=True)
    except Exception as e:  # hydra wraps the module's own error
        raise InputError(f"{path}: not a SAM 2 model config ({str(e)[:300]})") from None
    if checkpoint is not None:
        try:
            sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
            sd = sd["model"] if isinstance(sd, dict) and "model" in sd else sd
            model.load_state_dict(sd, strict=True)
        except (RuntimeError, KeyError, TypeError, EOFError, OSError) as e:
            raise InputError(
                f"{checkpoint}: not a checkpoint for {path.name} ({str(e)[:200]}). The official "
                f"checkpoints and their configs:\n{checkpoint_table()}"
            ) from None
    return model.to(check_device(device)).eval()


class _Frames:
    """The clip's frames as SAM 2 reads them (``images[i]``: a normalised ``3 x S x S`` float
    tensor, S the model's image size), made one at a time from the BGR frames in memory."""

    MEAN = np.array([0.485, 0.456, 0.406], np.float32)
    STD = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, frames: list[np.ndarray], size: int):
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> object:
        import torch

        f = self.frames[i]
        rgb = cv2.cvtColor(f, cv2.COLOR_BGR2RGB) if f.ndim == 3 else cv2.merge([f, f, f])
        x = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        x = (x.astype(np.float32) / 255.0 - self.MEAN) / self.STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def init_state(predictor: object, frames: list[np.ndarray], offload_state: bool = True) -> dict:
    """SAM 2's inference state for in-memory ``frames`` (the keys of SAM 2 1.1's
    ``init_state``), frames offloaded (made on demand, on the CPU) and state on the CPU."""
    import torch

    p = predictor
    h, w = frames[0].shape[:2]
    state: dict = {
        "images": _Frames(frames, p.image_size),  # type: ignore[attr-defined]
        "num_frames": len(frames),
        "offload_video_to_cpu": True,
        "offload_state_to_cpu": offload_state,
        "video_height": h,
        "video_width": w,
        "device": p.device,  # type: ignore[attr-defined]
        "storage_device": torch.device("cpu") if offload_state else p.device,  # type: ignore[attr-defined]
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    p._get_image_feature(state, frame_idx=0, batch_size=1)  # type: ignore[attr-defined]
    return state


class Sam2VideoSegmenter:
    """SAM 2's video predictor behind hmtools' engine interface (see module doc):
    :meth:`segment_clip` for ``pseudo-mask``, :meth:`propagate_masks` for ``propagate``."""

    name = "sam2"

    def __init__(
        self,
        predictor: object,
        device: str = "cpu",
        *,
        offload_state: bool = True,
        max_cond_frames: int = 4,
        progress: bool = False,
    ):
        self.predictor = predictor
        self.device = check_device(device)
        self.offload_state = offload_state
        self.max_cond_frames = max_cond_frames
        self.progress = progress
        p = predictor
        stride = int(getattr(p, "memory_temporal_stride_for_eval", 1))
        self.keep = (
            max(
                int(getattr(p, "num_maskmem", 7)) * stride,
                int(getattr(p, "max_obj_ptrs_in_encoder", 16)),
            )
            + 1
        )
        self._ious: list[float] = []
        self._hook()
        self.peak_state_frames = 0  # the most frame outputs held at once (tests, benchmarks)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, config: str | Path | None = None, device: str = "cpu"
    ) -> Sam2VideoSegmenter:
        return cls(build_predictor(config, checkpoint, device), device)

    def _hook(self) -> None:
        """Record the predicted IoU of the mask the SAM heads keep (SAM 2's track step drops it)."""
        p = self.predictor
        orig = p._forward_sam_heads  # type: ignore[attr-defined]

        def forward_sam_heads(*a: object, **k: object) -> tuple:
            out = orig(*a, **k)
            self._ious.append(float(out[2].float().max(dim=-1).values[0]))
            return out

        p._forward_sam_heads = forward_sam_heads  # type: ignore[attr-defined]

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _run(
        self, frames: list[np.ndarray], prompt: dict[int, np.ndarray | tuple], start: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks and scores for every frame of ``frames`` from ``prompt`` ({position: box
        ``(x, y, w, h)`` or mask}): forward from ``start``, then backward from it."""
        import torch

        n = len(frames)
        h, w = frames[0].shape[:2]
        masks = np.zeros((n, h, w), np.uint8)
        scores = np.zeros(n, np.float32)
        p = self.predictor
        old_max = getattr(p, "max_cond_frames_in_attn", -1)
        state: dict | None = None
        try:
            with torch.inference_mode(), self._autocast():
                p.max_cond_frames_in_attn = self.max_cond_frames  # type: ignore[attr-defined]
                state = init_state(p, frames, self.offload_state)
                prompt_score: dict[int, float] = {}
                for t, v in sorted(prompt.items()):
                    self._ious.clear()
                    if isinstance(v, np.ndarray):
                        p.add_new_mask(state, frame_idx=t, obj_id=1, mask=v != 0)  # type: ignore[attr-defined]
                    else:
                        x, y, bw, bh = v
                        box = np.array([x, y, x + bw, y + bh], np.float32)
                        p.add_new_points_or_box(state, frame_idx=t, obj_id=1, box=box)  # type: ignore[attr-defined]
                    prompt_score[t] = self._ious[-1] if self._ious else 1.0
                for reverse in (False, True):
                    if reverse and start == 0:
                        break
                    for t, s, m in self._propagate(state, start, reverse, prompt_score):
                        masks[t], scores[t] = m, s
        finally:
            p.max_cond_frames_in_attn = old_max  # type: ignore[attr-defined]
            del state
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return masks, scores

    def _propagate(
        self, state: dict, start: int, reverse: bool, prompt_score: dict[int, float]
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        p = self.predictor
        out = state["output_dict_per_obj"]
        gen = p.propagate_in_video(state, start_frame_idx=start, reverse=reverse)  # type: ignore[attr-defined]
        with _quiet_tqdm(not self.progress):
            while True:
                self._ious.clear()
                try:
                    t, _, logits = next(gen)
                except StopIteration:
                    return
                store = out[0]["cond_frame_outputs"]
                cond = t in store
                if not cond:
                    store = out[0]["non_cond_frame_outputs"]
                cur = store[t]
                present = float(cur["object_score_logits"].float().sigmoid().flatten()[0])
                iou = prompt_score.get(t, 1.0) if cond else (self._ious[-1] if self._ious else 1.0)
                m = (logits[0, 0] > 0).cpu().numpy().astype(np.uint8)
                yield t, iou * present, m
                self._prune(state, t, reverse)

    def _prune(self, state: dict, t: int, reverse: bool) -> None:
        """Drop frame outputs SAM 2 will not look at again (further behind ``t`` than
        ``self.keep``): the state is a window, not the clip."""
        nc = state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
        old = [f for f in nc if (f > t + self.keep if reverse else f < t - self.keep)]
        for f in old:
            del nc[f]
        self.peak_state_frames = max(self.peak_state_frames, len(nc))

    # the engine interface --------------------------------------------------------------------
    def segment_clip(
        self, frames: list[np.ndarray], box: tuple, start: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``pseudo-mask``: masks ``uint8 [T, H, W]`` and scores ``[T]`` from a ``box``
        ``(x, y, w, h)`` on frame position ``start``."""
        return self._run(frames, {start: tuple(float(v) for v in box)}, start)

    def propagate_masks(
        self, frames: list[np.ndarray], corrected: dict[int, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``propagate``: masks and scores for every frame from the corrected masks
        ``{position: mask}``, each a conditioning frame."""
        if not corrected:
            raise InputError("no corrected frame to propagate from")
        return self._run(frames, dict(corrected), min(corrected))


@contextlib.contextmanager
def _quiet_tqdm(quiet: bool) -> Iterator[None]:
    """SAM 2's propagation loop draws its own tqdm bar per pass: silence it unless asked."""
    import sam2.sam2_video_predictor as vp

    if not quiet:
        yield
        return
    orig = vp.tqdm
    vp.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        vp.tqdm = orig


def small_sam2_overrides(image_size: int = 128) -> dict:
    """Overrides that make SAM 2.1's tiny config a small random model for tests and CPU
    benchmarks (``build_predictor("tiny", None, overrides=...)``): a 5-block Hiera of width 16,
    one memory-attention layer, at ``image_size`` px (a multiple of 32)."""
    g = image_size // 16
    pre = "model.memory_attention.layer"
    return {
        "model.image_size": image_size,
        "model.image_encoder.trunk.embed_dim": 16,
        "model.image_encoder.trunk.stages": [1, 1, 2, 1],
        "model.image_encoder.trunk.global_att_blocks": [3],
        "model.image_encoder.trunk.window_spec": [4, 4, 4, 2],
        "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size": [4, 4],
        "model.image_encoder.neck.backbone_channel_list": [128, 64, 32, 16],
        "model.memory_attention.num_layers": 1,
        f"{pre}.dim_feedforward": 256,
        f"{pre}.self_attention.feat_sizes": [g, g],
        f"{pre}.cross_attention.feat_sizes": [g, g],
        "model.memory_encoder.fuser.num_layers": 1,
    }


def small_sam2(image_size: int = 128, seed: int = 0, device: str = "cpu") -> object:
    """A small SAM 2 video predictor with random weights from the package's own modules and its
    tiny config (the real code path, quickly; proves plumbing, not quality)."""
    import torch

    torch.manual_seed(seed)
    return build_predictor("tiny", None, device, small_sam2_overrides(image_size))


def write_small_sam2(folder: str | Path, image_size: int = 128, seed: int = 0) -> tuple[Path, Path]:
    """``(checkpoint, config)`` files of :func:`small_sam2` in ``folder``, as a user's would be
    (``{"model": state_dict}`` and a YAML config): for the end-to-end tests of the commands."""
    import torch
    from omegaconf import OmegaConf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.load(config_path("tiny"))
    for k, v in small_sam2_overrides(image_size).items():
        OmegaConf.update(cfg, k, v, force_add=True)
    config = folder / f"sam2_small_{image_size}.yaml"
    OmegaConf.save(cfg, config)
    ckpt = folder / f"sam2_small_{image_size}.pt"
    model = small_sam2(image_size, seed)
    torch.save({"model": model.state_dict()}, ckpt)  # type: ignore[attr-defined]
    return ckpt, config
