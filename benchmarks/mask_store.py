"""-HM store vs mask image folders: bytes per mask and the time to load one clip of masks.

For a few thousand person-like masks (the synthetic generator's articulated figure in random
poses, one 103-frame "video" after another) at FineDiving's 256x455 and at 720x1280, prints side
by side:
  (a) bytes per mask: HDF5 store vs a PNG folder vs a JPEG folder (the official FineDiving-HM
      release format), and their ratios;
  (b) time to load one 103-frame clip of masks: MaskStore.read_masks vs reading 103 PNG / JPEG
      files with OpenCV, as ratios (median over repeated loads of random clips).

Usage: python benchmarks/mask_store.py [--masks 3090] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hmtools.datasets.figure import Pose, figure_mask
from hmtools.masks import LayerData, MaskStore, StoreWriter

CLIP = 103


def person_masks(n: int, h: int, w: int, rng: np.random.Generator):
    """Yield n masks: a figure tumbling through a dive, one 103-frame sequence after another."""
    for i in range(n):
        t = i % CLIP
        if t == 0:
            L = rng.uniform(0.22, 0.4) * h
            x0, y0 = rng.uniform(0.3, 0.6) * w, rng.uniform(0.2, 0.4) * h
            spin = rng.uniform(5, 12)
        pose = Pose(
            hip=60 + 60 * np.sin(t / 9),
            knee=40 + 50 * np.sin(t / 7),
            shoulder=90 + 80 * np.sin(t / 5),
            elbow=30,
            spread=10 * np.sin(t / 3),
        )
        yield figure_mask(
            (h, w),
            pose,
            (x0 + 0.6 * t * w / 400, y0 + 0.5 * t * h / 400),
            L,
            spin * t,
            twist=(t * 4) % 180,
        )


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def bench(n: int, h: int, w: int, repeats: int, rng: np.random.Generator) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    videos = (n + CLIP - 1) // CLIP
    masks = np.stack(list(person_masks(videos * CLIP, h, w, rng)))
    with StoreWriter(tmp / "s.h5", name="bench") as wr:
        for v in range(videos):
            vid = (f"video{v:04d}", 0)
            wr.add_video(vid, height=h, width=w, num_frames=CLIP)
            wr.write_layer(
                vid, "gtm", LayerData.from_masks(np.arange(CLIP), masks[v * CLIP : (v + 1) * CLIP])
            )
    for ext, params in ((".png", []), (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])):
        for v in range(videos):
            d = tmp / ext[1:] / f"video{v:04d}" / "0"
            d.mkdir(parents=True)
            for t in range(CLIP):
                cv2.imwrite(str(d / f"{t:05d}{ext}"), masks[v * CLIP + t] * 255, params)
    total = videos * CLIP
    b_h5 = (tmp / "s.h5").stat().st_size / total
    b_png = folder_bytes(tmp / "png") / total
    b_jpg = folder_bytes(tmp / "jpg") / total
    print(f"\n{h}x{w}: {total} masks in {videos} videos")
    print(f"  (a) bytes/mask   HDF5 {b_h5:8.0f}   PNG {b_png:8.0f}   JPEG {b_jpg:8.0f}")
    print(f"      HDF5/PNG = 1/{b_png / b_h5:.1f}   HDF5/JPEG = 1/{b_jpg / b_h5:.1f}")
    t_h5, t_png, t_jpg = [], [], []
    with MaskStore(tmp / "s.h5") as st:
        for _ in range(repeats):
            v = int(rng.integers(videos))
            t0 = time.perf_counter()
            _, m = st.read_masks((f"video{v:04d}", 0), "gtm", 0, CLIP)
            t_h5.append(time.perf_counter() - t0)
            for ext, acc in ((".png", t_png), (".jpg", t_jpg)):
                d = tmp / ext[1:] / f"video{v:04d}" / "0"
                t0 = time.perf_counter()
                arr = np.stack(
                    [
                        cv2.imread(str(d / f"{t:05d}{ext}"), cv2.IMREAD_GRAYSCALE) >= 128
                        for t in range(CLIP)
                    ]
                )
                acc.append(time.perf_counter() - t0)
            assert m.shape == arr.shape
    mh, mp, mj = (statistics.median(x) * 1000 for x in (t_h5, t_png, t_jpg))
    print(
        f"  (b) load one {CLIP}-frame clip (median of {repeats}): HDF5 {mh:.1f} ms   "
        f"PNG {mp:.1f} ms   JPEG {mj:.1f} ms"
    )
    print(f"      HDF5 is {mp / mh:.1f}x faster than PNG, {mj / mh:.1f}x faster than JPEG")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", type=int, default=3090)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    bench(args.masks, 256, 455, args.repeats, rng)
    bench(args.masks // 3, 720, 1280, args.repeats, rng)
    bench(176, 256, 455, args.repeats, rng)


if __name__ == "__main__":
    main()
