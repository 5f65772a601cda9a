"""Held-out mel distance and SI-SDR of a tiny audio recipe's model at step 0 and after training (its export dir).

    python eval/recipe_mel.py recipes/wavtokenizer/tiny-cpu.yaml [--run-root .] [--num-codebooks 1 2]

Reads the recipe's tokenizer, overrides, seed, data dirs and sample rate; step 0 is the model the
recipe builds (seeded as `vtok fit` seeds it), after one training-mode forward on a batch of
training clips (so a k-means-initialised codebook is initialised as in the run). The trained model
is `<run-root>/<export_dir>`. Metrics over every whole clip of val_dir: the multi-resolution mel
distance the training logs as `val/mel_distance` (DAC's: L1 of log10 mels at 7 resolutions, lower
is better) and SI-SDR in dB. For RVQ codecs, --num-codebooks also reports decoding the first q.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vtok.metrics.audio import mel_distance, si_sdr
from vtok.train.audio_data import AudioClips

from recipe_models import read_recipe, step0_and_trained  # beside this script


def scores(tok, clips: list[torch.Tensor], rate: int, num_codebooks: int | None = None) -> tuple[float, float]:
    """Mean mel distance and SI-SDR (dB) of decode(encode(clip)) against each clip (1, T)."""
    kw = {} if num_codebooks is None else {"num_codebooks": num_codebooks}
    mels, sdrs = [], []
    with torch.no_grad():
        for wav in clips:
            x = wav[None]
            y = tok.decode(tok.encode(x, **kw))[..., : x.shape[-1]]
            mels.append(mel_distance(x, y, rate).item())
            sdrs.append(si_sdr(x, y).item())
    return sum(mels) / len(mels), sum(sdrs) / len(sdrs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--run-root", type=Path, default=Path("."), help="the directory `vtok fit` ran in")
    parser.add_argument("--num-codebooks", type=int, nargs="*", default=[])
    args = parser.parse_args()
    recipe, data_args = read_recipe(args.recipe)
    rate = data_args["sample_rate"]
    val = AudioClips(args.run_root / data_args["val_dir"], rate)
    clips = [val[i] for i in range(len(val))]
    train = AudioClips(args.run_root / data_args["train_dir"], rate, data_args["segment_seconds"])
    batch = torch.stack([train[i] for i in range(min(len(train), data_args.get("batch_size", 16)))])
    fresh, trained = step0_and_trained(recipe, args.run_root, batch)
    seconds = sum(c.shape[-1] for c in clips) / rate
    print(f"{args.recipe}: {len(clips)} held-out clips, {seconds:.1f} s at {rate} Hz")
    for q in [None, *args.num_codebooks]:
        label = "all codebooks" if q is None else f"first {q} codebooks"
        (m0, s0), (m1, s1) = scores(fresh, clips, rate, q), scores(trained, clips, rate, q)
        print(f"  {label:18s} mel distance step 0 {m0:.3f} -> trained {m1:.3f} ({m1 - m0:+.3f}); "
              f"SI-SDR {s0:.2f} -> {s1:.2f} dB")


if __name__ == "__main__":
    main()
