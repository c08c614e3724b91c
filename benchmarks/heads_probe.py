"""Where does the model lose to the ridge probe? The paper's heads alone on frozen features.

On a split of ``benchmarks/learning.py`` (its ``seedS`` folders; made if missing), every clip's
test-time input (centre crop) goes once through the frozen Kinetics I3D of the small config,
giving per-snippet Stage-4 features ``[N, 1024]`` (cached in ``<seed>/head-features.npz``). On
those features alone, side by side on the same test clips:

- ``ridge``: the ridge probe of ``learning.py`` (closed form, alpha by 5-fold CV);
- ``linear``: a linear pairwise head, ``Delta = w . (f_q - f_z)`` on the standardised features,
  trained like the model (the same pairs, symmetric L_E, Adam, schedule): SGD on pairs;
- ``heads``: the small config's own heads (``UniFineParser.parse``: LayerNorm, feature dropout,
  TAP, LayerNorm; FineReg, Eq. 7) trained with L_T (Eq. 6) + the symmetric L_E (Eq. 9), Adam
  3e-4 (tau 1e-4), 1 warm-up epoch then cosine, batches of 2 pairs, 10 epochs: the engine's
  recipe, without the backbone. Once per ``--feature-dropout`` rate.

Each trained head runs ``--repeats`` times from different initialisations and pair draws
(seconds each); it is scored with 10 voters (Eq. 10). Printed per seed: each run's rho, their
mean, the rho of the runs' averaged predictions, the offset rho, and the paired difference of
the averaged predictions from the ridge probe with its 95 % bootstrap interval over the test
clips, and (for each later dropout rate) their paired difference from the first rate's. A
fine-tuned model cannot beat the ridge probe if its heads, given the same frozen features, do
not reach it: this separates the read-out from the fine-tuning in minutes instead of hours. Seeds 4-7 (SPEC.md, "Where the read-out loses"): the linear pairwise head is within
+-0.024 of the ridge probe, the paper's heads 0.04-0.17 below it per run; dropout 0.5 on X^F lifts
them on seeds 4 and 7 (+0.09, +0.08), not on 5 and 6.

Usage: python benchmarks/heads_probe.py [--seeds 5 7] [--work learning-bench]
       [--feature-dropout 0 0.5] [--repeats 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_probe import ridge  # noqa: E402
from learning import prepare  # noqa: E402

from hmtools.datasets.clips import ClipDataset  # noqa: E402
from hmtools.engine.config import TrainConfig  # noqa: E402
from hmtools.engine.evaluate import rho_interval  # noqa: E402
from hmtools.engine.train import load_data, lr_lambda  # noqa: E402
from hmtools.models.build import build_model  # noqa: E402
from hmtools.models.i3d import MODULES  # noqa: E402
from hmtools.models.losses import temporal_loss  # noqa: E402
from hmtools.models.weights import KINETICS400  # noqa: E402

VOTERS = 10


def features(root: Path) -> dict[str, np.ndarray]:
    """Per-snippet frozen Stage-4 features, soft labels, scores and dive numbers of both splits."""
    cache = root / "head-features.npz"
    if cache.exists():
        return dict(np.load(cache))
    model, _ = build_model("small", i3d_weights=KINETICS400, use_sve=False)
    model.eval()
    cfg = TrainConfig(
        dataset="finediving",
        data_root=str(root / "frames"),
        annotations=str(root / "Annotations"),
        model="small",
    )
    data = load_data(cfg, model)
    out: dict[str, np.ndarray] = {}
    for split, samples in (("train", data.train), ("test", data.test)):
        ds = ClipDataset(samples, data.clip_cfg, train=False)
        f, soft = [], []
        for i in range(len(samples)):
            item = ds.item(i)
            with torch.inference_mode():
                h = model.i3d.run_modules(model.snippets(item["video"][None]), 0, len(MODULES))
            f.append(h.mean(dim=(2, 3, 4)).numpy())
            soft.append(item["soft_labels"].numpy())
        out[f"{split}_f"] = np.stack(f)
        out[f"{split}_soft"] = np.stack(soft)
        out[f"{split}_y"] = np.array([s.final_score for s in samples])
        out[f"{split}_type"] = np.array([s.action_type for s in samples])
    tmp = root / "head-features.tmp.npz"
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def groups_of(types: np.ndarray) -> dict[str, list[int]]:
    g: dict[str, list[int]] = {}
    for k, t in enumerate(types):
        g.setdefault(str(t), []).append(k)
    return g


def ridge_predictions(d: dict[str, np.ndarray]) -> np.ndarray:
    """The ridge probe of ``learning.py``: type mean + ridge of the offset."""
    g = groups_of(d["train_type"])
    mean = {t: d["train_y"][k].mean() for t, k in g.items()}
    base_tr = np.array([mean[str(t)] for t in d["train_type"]])
    base_te = np.array([mean.get(str(t), d["train_y"].mean()) for t in d["test_type"]])
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    return base_te + ridge(flat(d["train_f"]), d["train_y"] - base_tr, flat(d["test_f"]))


class LinearPairHead(torch.nn.Module):
    """``Delta = w . (f_q - f_z)`` on features standardised by the training set's statistics."""

    def __init__(self, train_f: np.ndarray):
        super().__init__()
        flat = train_f.reshape(len(train_f), -1)
        self.register_buffer("mu", torch.tensor(flat.mean(0), dtype=torch.float32))
        self.register_buffer("sd", torch.tensor(flat.std(0) + 1e-6, dtype=torch.float32))
        self.w = torch.nn.Linear(flat.shape[1], 1)
        torch.nn.init.zeros_(self.w.weight)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ((x.flatten(1) - self.mu) / self.sd)[:, None], None, None

    def delta(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.w(a - b).squeeze(-1)


class ModelHeads(torch.nn.Module):
    """The small config's heads: ``UniFineParser.parse`` then FineReg."""

    def __init__(self, dropout: float):
        super().__init__()
        self.model, _ = build_model("small", use_sve=False, feature_dropout=dropout)

    def encode(self, x: torch.Tensor):
        e = self.model.parse(x)
        return e.steps, e.a1, e.a2

    def delta(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model.finereg(a, b)


def voter_rows(d: dict[str, np.ndarray]) -> list[list[int]]:
    """Each test clip's voting exemplars (Eq. 10): up to ``VOTERS`` training clips of its dive
    number (all training clips if none), drawn as ``ExemplarIndex.test_exemplars`` draws them."""
    g = groups_of(d["train_type"])
    every = list(range(len(d["train_y"])))
    rows = []
    for i, t in enumerate(d["test_type"]):
        c = g.get(str(t), every)
        rows.append([c[k] for k in np.random.default_rng([0, i]).permutation(len(c))[:VOTERS]])
    return rows


def fit_and_predict(
    d: dict[str, np.ndarray],
    voters: list[list[int]],
    head: str,
    dropout: float,
    rep: int,
    epochs: int,
    batch: int = 2,
) -> np.ndarray:
    """Train one head on the training pairs; test predictions voted over ``voters`` (Eq. 10)."""
    torch.manual_seed(rep)
    rng = np.random.default_rng(rep)
    net: torch.nn.Module = LinearPairHead(d["train_f"]) if head == "linear" else ModelHeads(dropout)
    if head == "linear":
        groups = [{"params": list(net.parameters()), "lr": 3e-4}]
    else:
        taus = net.model.tap.temperatures()
        ids = {id(p) for p in taus}
        rest = [p for p in net.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": 3e-4}, {"params": taus, "lr": 1e-4}]
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(1, epochs))
    f = torch.tensor(d["train_f"], dtype=torch.float32)
    soft = torch.tensor(d["train_soft"], dtype=torch.float32)
    y = torch.tensor(d["train_y"], dtype=torch.float32)
    types = d["train_type"]
    g = groups_of(types)
    n = len(y)
    net.train()
    for _ in range(epochs):
        perm = rng.permutation(n)
        for b0 in range(0, n, batch):
            q = perm[b0 : b0 + batch]
            z = np.array(
                [rng.choice([k for k in g[str(types[i])] if k != i] or g[str(types[i])]) for i in q]
            )
            steps, a1, a2 = net.encode(torch.cat([f[q], f[z]]))
            sq, sz = steps[: len(q)], steps[len(q) :]
            pq = y[z] + net.delta(sq, sz).mean(-1)  # Eq. 7
            pz = y[q] + net.delta(sz, sq).mean(-1)
            loss = 0.5 * (((pq - y[q]) ** 2).mean() + ((pz - y[z]) ** 2).mean())  # Eq. 9
            if a1 is not None:
                loss = loss + temporal_loss(a1, a2, torch.cat([soft[q], soft[z]]))  # Eq. 6
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        test_steps = net.encode(torch.tensor(d["test_f"], dtype=torch.float32))[0]
        train_steps = net.encode(f)[0]
        preds = []
        for i, ks in enumerate(voters):
            qi = test_steps[i : i + 1].expand(len(ks), *test_steps.shape[1:])
            preds.append(float((y[ks] + net.delta(qi, train_steps[ks]).mean(-1)).mean()))
    return np.array(preds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 7])
    ap.add_argument("--work", type=Path, default=Path("learning-bench"))
    ap.add_argument("--videos", type=int, default=600)
    ap.add_argument("--test-share", type=float, default=0.3)
    ap.add_argument("--feature-dropout", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(
        f"{'seed':>5} {'read-out':<12} {'rho per run':<24} {'mean':>6} {'averaged':>8} "
        f"{'offset rho':>10} {'averaged - ridge [95 %]':>26} {'vs the first rate [95 %]':>26}"
    )
    for seed in args.seeds:
        root = args.work / f"seed{seed}"
        root.mkdir(parents=True, exist_ok=True)
        prepare(root, args.videos, seed, args.test_share, 128, need_pm=False)
        d = features(root)
        voters = voter_rows(d)
        t, rid = d["test_y"], ridge_predictions(d)
        base = np.array([d["train_y"][ks].mean() for ks in voters])  # the exemplar means
        print(f"{seed:>5} {'ex. means':<12} {'':<24} {spearmanr(t, base).statistic:6.3f}")
        print(f"{seed:>5} {'ridge':<12} {'':<24} {spearmanr(t, rid).statistic:6.3f}")
        heads = [("linear", 0.0)] + [("heads", p) for p in args.feature_dropout]
        first = None  # the averaged predictions of the heads at the first dropout rate
        for head, p in heads:
            runs = [
                fit_and_predict(d, voters, head, p, r, args.epochs) for r in range(args.repeats)
            ]
            rhos = [spearmanr(t, x).statistic for x in runs]
            avg = np.mean(runs, 0)
            off = np.mean([spearmanr(t - base, x - base).statistic for x in runs])
            vs = rho_interval(t, avg, rid)
            name = head if head == "linear" else f"heads p={p:g}"
            vs_first = ""
            if head == "heads" and first is None:
                first = avg
            elif head == "heads":
                v = rho_interval(t, avg, first)
                vs_first = f"{v['estimate']:+7.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
            print(
                f"{seed:>5} {name:<12} {' '.join(f'{r:.3f}' for r in rhos):<24} "
                f"{np.mean(rhos):6.3f} {spearmanr(t, avg).statistic:8.3f} {off:10.3f} "
                f"{vs['estimate']:+7.3f} [{vs['ci'][0]:+.3f}, {vs['ci'][1]:+.3f}] {vs_first:>26}",
                flush=True,
            )


if __name__ == "__main__":
    main()
