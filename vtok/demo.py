"""`vtok demo`: real sample images and speech through an image and an audio tokenizer."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from . import assets
from .tokenizer import Tokenizer

FALLBACK = {"image": "vqgan-tiny", "audio": "rvq-codec-tiny"}


def pick_tokenizer(modality: str, name: str | None) -> tuple[Tokenizer, str]:
    """The named tokenizer, else the first shipped one of the modality, else an untrained tiny one."""
    from .hub import first_shipped, load
    from .registry import create

    name = name or first_shipped(modality)
    if name is not None:
        return load(name), name
    return create(FALLBACK[modality]).eval(), f"{FALLBACK[modality]} (untrained: no shipped checkpoint yet)"


def _row(**cols) -> str:
    return "| " + " | ".join(str(v) for v in cols.values()) + " |"


@torch.no_grad()
def run_demo(out: Path, image_model: str | None = None, audio_model: str | None = None) -> str:
    """Encode/decode one sample image and one speech clip; write PNG/WAV + results.md to `out`."""
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    rows = ["| input | tokenizer | ids shape | first ids | vocab | bits | metric |", "|---|---|---|---|---|---|---|"]

    tok, label = pick_tokenizer("image", image_model)
    path = assets.sample_image_paths()[0]
    x = assets.load_image(path, size=tok.image_size)[None]
    t0 = time.perf_counter()
    ids = tok.encode(x)
    x_hat = tok.decode(ids)
    ms = (time.perf_counter() - t0) * 1e3
    psnr = peak_signal_noise_ratio(x_hat, x, data_range=1.0).item()
    assets.save_image(x[0], out / f"{path.stem}_original.png")
    assets.save_image(x_hat[0], out / f"{path.stem}_reconstruction.png")
    rows.append(_row(input=f"{path.name} {tuple(x.shape)}", tok=label, shape=tuple(ids.shape),
                     first=ids.flatten()[:6].tolist(), vocab=tok.vocab_size,
                     bits=f"{tok.bits_per_image:.0f} per image", metric=f"PSNR {psnr:.2f} dB ({ms:.0f} ms)"))

    tok, label = pick_tokenizer("audio", audio_model)
    path = assets.sample_speech_paths()[0]
    wav, _ = assets.load_audio(path, sample_rate=tok.sample_rate)
    wav = wav[None]
    t0 = time.perf_counter()
    ids = tok.encode(wav)
    wav_hat = tok.decode(ids)[..., : wav.shape[-1]]
    ms = (time.perf_counter() - t0) * 1e3
    sisdr = scale_invariant_signal_distortion_ratio(wav_hat, wav).mean().item()
    assets.save_audio(wav[0], tok.sample_rate, out / f"{path.stem}_original.wav")
    assets.save_audio(wav_hat[0], tok.sample_rate, out / f"{path.stem}_reconstruction.wav")
    rows.append(_row(input=f"{path.name} {wav.shape[-1] / tok.sample_rate:.2f} s", tok=label, shape=tuple(ids.shape),
                     first=ids[0, 0, :6].tolist(), vocab=f"{tok.num_codebooks} x {tok.vocab_size}",
                     bits=f"{tok.bits_per_second:.0f} per second", metric=f"SI-SDR {sisdr:.2f} dB ({ms:.0f} ms)"))

    table = "\n".join(rows)
    (out / "results.md").write_text("# vtok demo\n\n" + table + "\n")
    print(table)
    print(f"\nwrote {out}/: original and reconstructed PNG and WAV files, results.md")
    return table
