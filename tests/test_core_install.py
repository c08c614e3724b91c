"""The light core (issue 25): ``pip install hmtools`` without extras has no torch, and packs,
validates, inspects, merges and reports on a store; a command of a missing extra says which
extra to install. Builds a fresh venv with ``HMTOOLS_EXTRAS=core scripts/setup.sh``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_mask_tree

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    env = {**os.environ, "HMTOOLS_VENV": str(venv), "HMTOOLS_EXTRAS": "core"}
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return venv


def _run(venv: Path, *args: object, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(venv / "bin" / "hmtools"), *map(str, args)], capture_output=True, text=True
    )
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def test_core_has_no_torch_and_runs_the_store_commands(core_venv, tmp_path):
    py = core_venv / "bin" / "python"
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('torch', 'torchvision', 'segment_anything', 'sam2', "
        "'label_studio_sdk', 'ai_edge_litert') if u.find_spec(m)])"
    )
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"
    write_mask_tree(tmp_path / "gt", {("dive_a", 0): list(range(12)), ("dive_b", 1): [0, 2, 4]})
    write_mask_tree(tmp_path / "pm", {("dive_a", 0): list(range(12))}, seed=1)
    _run(core_venv, "pack", tmp_path / "gt", "--layer", "gtm", "--out", tmp_path / "g.h5", "-q")
    _run(core_venv, "pack", tmp_path / "pm", "--layer", "pm", "--out", tmp_path / "p.h5", "-q")
    _run(core_venv, "merge", tmp_path / "g.h5", tmp_path / "p.h5", "--out", tmp_path / "m.h5")
    assert "OK" in _run(core_venv, "validate", tmp_path / "m.h5").stdout
    info = _run(core_venv, "info", tmp_path / "m.h5").stdout
    assert "videos: 2" in info and "layer pm" in info and "layer gtm" in info
    _run(core_venv, "stats", tmp_path / "m.h5", "--out", tmp_path / "st", "-q")
    assert (tmp_path / "st" / "report.md").exists()
    assert list((tmp_path / "st").glob("*.png"))
    _run(core_venv, "unpack", tmp_path / "m.h5", "--layer", "gtm", "--out", tmp_path / "un", "-q")
    assert len(list((tmp_path / "un").rglob("*.png"))) == 15
    # a command of an extra says which one to install
    r = _run(core_venv, "model-info", "--config", "tiny", ok=False)
    assert r.returncode == 1 and "pip install 'hmtools[train]'" in r.stderr, r.stderr
    r = _run(core_venv, "ls-status", "--project", "x", ok=False)
    assert r.returncode == 1 and "pip install 'hmtools[labelstudio]'" in r.stderr, r.stderr


def test_missing_extra_messages():
    from hmtools.cli import missing_extra_message

    assert "hmtools[sam2]" in missing_extra_message("omegaconf", "pseudo-mask")
    assert "hmtools[sam]" in missing_extra_message("torch", "pseudo-mask")
    assert "hmtools[train]" in missing_extra_message("torch.nn", "train")
    assert missing_extra_message("nonesuch", "train") is None
