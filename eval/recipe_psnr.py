"""Held-out PSNR of a tiny image recipe's model at step 0 and after training (its export dir).

    python eval/recipe_psnr.py recipes/titok/tiny-cpu.yaml [--run-root .] [--num-tokens 4 8 16]

Reads the recipe's tokenizer, overrides, seed, data dirs and image size; step 0 is the model the
recipe builds (seeded as `vtok fit` seeds it), after one training-mode forward on a batch of
training images (so a k-means-initialised codebook is initialised as in the run). The trained
model is `<run-root>/<export_dir>`. PSNR over the whole val_dir, images resized to image_size.
For variable-length tokenizers, --num-tokens also reports PSNR when decoding the first k ids.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from vtok.assets import load_image
from vtok.train.data import IMAGE_SUFFIXES, files_below

from recipe_models import read_recipe, step0_and_trained  # beside this script


def psnr(tok, x: torch.Tensor, num_tokens: int | None = None, batch: int = 64) -> float:
    """PSNR (dB) of decode(encode(x)) against x, over all images."""
    kw = {} if num_tokens is None else {"num_tokens": num_tokens}
    with torch.no_grad():
        y = torch.cat([tok.decode(tok.encode(x[i : i + batch], **kw)) for i in range(0, len(x), batch)])
    return peak_signal_noise_ratio(y, x, data_range=1.0).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--run-root", type=Path, default=Path("."), help="the directory `vtok fit` ran in")
    parser.add_argument("--num-tokens", type=int, nargs="*", default=[])
    args = parser.parse_args()
    recipe, data_args = read_recipe(args.recipe)
    size = data_args["image_size"]
    def load(folder: str, limit: int | None = None) -> torch.Tensor:
        files = files_below(args.run_root / folder, IMAGE_SUFFIXES, "images")[:limit]
        return torch.stack([load_image(p, size=size) for p in files])

    val, train = load(data_args["val_dir"]), load(data_args["train_dir"], data_args.get("batch_size", 16))
    fresh, trained = step0_and_trained(recipe, args.run_root, train)
    print(f"{args.recipe}: {len(val)} held-out images at {size}px")
    for k in [None, *args.num_tokens]:
        label = "all tokens" if k is None else f"first {k} tokens"
        before, after = psnr(fresh, val, k), psnr(trained, val, k)
        print(f"  {label:16s} step 0 {before:6.2f} dB -> trained {after:6.2f} dB ({after - before:+.2f} dB)")


if __name__ == "__main__":
    main()
