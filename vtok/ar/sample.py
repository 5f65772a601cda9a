"""`vtok ar sample`: draw token sequences from a trained GPT and decode them with its tokenizer."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from .sequence import SequenceFormat


def load_generator(path: str | Path, tokenizer: str | None = None):
    """(GPT, SequenceFormat, record, tokenizer) of a directory written at the end of `vtok ar fit`.

    The tokenizer is the one recorded (or `tokenizer`); its hash must match the GPT's, else ValueError.
    """
    from ..hub import load
    from .export import tokenizer_hash
    from .gpt import GPT

    path = Path(path)
    if not (path / "sequence.json").is_file():
        raise ValueError(f"{path}: expected a GPT directory written by `vtok ar fit` (config.json, model.safetensors, "
                         "sequence.json), found no sequence.json")
    record = json.loads((path / "sequence.json").read_text())
    gpt = GPT.from_pretrained(str(path)).eval()
    tok = load(tokenizer or record["tokenizer"]).eval()
    got = tokenizer_hash(tok)
    if got != record["tokenizer_hash"]:
        raise ValueError(f"{tokenizer or record['tokenizer']}: tokenizer hash {got[:12]} does not match the one the GPT "
                         f"was trained on ({record['tokenizer_hash'][:12]}); decode with the exporting tokenizer")
    return gpt, SequenceFormat(**record["format"]), record, tok


def image_grid(x: Tensor, columns: int) -> Tensor:
    """(N,3,H,W) in [0,1] -> one (3, rows*(H+2), columns*(W+2)) grid with a 2-pixel white gutter."""
    n, c, h, w = x.shape
    rows = math.ceil(n / columns)
    grid = torch.ones(c, rows * (h + 2), columns * (w + 2))
    for i in range(n):
        r, col = divmod(i, columns)
        grid[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, col * (w + 2) + 1 : col * (w + 2) + 1 + w] = x[i]
    return grid


@torch.no_grad()
def sample(
    path: str | Path,
    out: str | Path,
    n: int = 16,
    label: int | None = None,
    cfg: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_tokens: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    tokenizer: str | None = None,
) -> list[Path]:
    """Sample n items and write them to `out`: samples.png (images, a grid) or sample_XX.wav (audio); returns paths."""
    from ..assets import save_audio, save_image

    gpt, fmt, record, tok = load_generator(path, tokenizer)
    if n < 1:
        raise ValueError(f"n: expected at least 1 sample, got {n}")
    classes = gpt.config["num_classes"]
    if label is not None and not 0 <= label < classes:
        raise ValueError(f"label: expected 0..{classes - 1} (the GPT has {classes} classes), got {label}")
    if record["modality"] == "image":
        frames = num_tokens or record["tokens_per_item"]
        if not fmt.variable_length and frames != record["tokens_per_item"]:
            raise ValueError(f"num_tokens: this tokenizer takes exactly {record['tokens_per_item']} tokens, got {frames}")
        prompt = fmt.prompt(n, frames)
    else:
        frames = round((seconds or 2.0) * record["tokens_per_second"])
        prompt = fmt.prompt(n)
    steps = fmt.steps(frames)
    if prompt.shape[-1] + steps > fmt.block_size:
        raise ValueError(f"{frames} frames need {prompt.shape[-1] + steps} positions, more than the GPT's block size "
                         f"{fmt.block_size}")
    labels = None if label is None else torch.full((n,), label)
    generator = torch.Generator().manual_seed(seed)
    tokens = gpt.generate(prompt, steps, labels=labels, cfg_scale=cfg, temperature=temperature, top_k=top_k,
                          top_p=top_p, generator=generator, allowed=fmt.allowed(frames))
    codes = fmt.to_codes(tokens, prompt.shape[-1], frames)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if record["modality"] == "image":
        x = tok.decode(codes)
        target = out / "samples.png"
        save_image(image_grid(x, math.ceil(math.sqrt(n))), target)
        return [target]
    wav = tok.decode(codes if codes.ndim == 3 else codes[:, None])
    paths = [out / f"sample_{i:02d}.wav" for i in range(n)]
    for i, p in enumerate(paths):
        save_audio(wav[i], tok.sample_rate, p)
    return paths
