"""`vtok demo`: the shipped tokenizers on held-out sample images and speech -> a grid, WAVs, spectrograms, RD plots, a table.

The sample images and clips in `vtok/assets` come from sources the shipped tokenizers never saw in
training (their crops and speakers are in the test split of `eval/prepare_offline_data.py`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from . import assets
from .evaluation import codecs as classic

IMAGE_TOKENS = (1, 2, 4, 8, 16, 32)  # token counts shown for variable-length image tokenizers
AUDIO_CODEBOOKS = (1, 2, 4, 8)  # codebook counts measured for RVQ codecs
AUDIO_METRICS = ("pesq", "stoi", "mel", "dnsmos")
CELL = 128  # grid cell: 64 px images upscaled 2x (nearest) so the pixels stay visible


def shipped_names(modality: str) -> list[str]:
    """Registry names of every checkpoint shipped for `modality`; ValueError when none is."""
    from .hub import checkpoints_dir
    from .hub import shipped_names as shipped

    names = shipped(modality)
    if not names:
        raise ValueError(f"vtok demo: no shipped {modality} checkpoint in {checkpoints_dir()}; "
                         f"pass --{modality}-model with a saved directory or Hub repo id")
    return names


# --- images -------------------------------------------------------------------------------------
def _label(img: Image.Image, text: str) -> Image.Image:
    """The image with a header strip holding `text`."""
    out = Image.new("RGB", (img.width, img.height + 14), "white")
    out.paste(img, (0, 14))
    ImageDraw.Draw(out).text((3, 1), text, fill="black")
    return out


def image_grid(columns: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """PNG grid: one row per image, one labelled column per (label, images (N,3,H,W) in [0,1])."""
    n = columns[0][1].shape[0]
    cells = [[Image.fromarray((c[i].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
              .resize((CELL, CELL), Image.Resampling.NEAREST) for i in range(n)] for _, c in columns]
    grid = Image.new("RGB", (CELL * len(columns), 14 + CELL * n), "white")
    for j, (label, _) in enumerate(columns):
        grid.paste(_label(cells[j][0], label), (j * CELL, 0))
        for i in range(1, n):
            grid.paste(cells[j][i], (j * CELL, 14 + i * CELL))
    grid.save(path)
    return path


def image_part(names: Sequence[str], out: Path, progress: tqdm) -> tuple[dict, Path]:
    """Evaluate the image tokenizers against JPEG/WebP on the sample images; draw the reconstruction grid."""
    from .evaluation.harness import evaluate, load_images
    from .hub import load

    files = assets.sample_image_paths()
    result = evaluate(files[0].parent, tokenizers=list(names), codecs=["jpeg", "webp"], out=out / "image",
                      num_tokens=list(IMAGE_TOKENS), rfid=False, rd=True, batch_size=len(files), device="cpu")
    progress.update()
    toks = [load(n).eval() for n in names]
    images = load_images(files, toks[0].image_size)
    columns = [("original", images)]
    with torch.no_grad():
        for name, tok in zip(names, toks):
            for k in [k for k in IMAGE_TOKENS if k <= tok.num_tokens] if tok.variable_length else [tok.num_tokens]:
                ids = tok.encode(images, num_tokens=k) if tok.variable_length else tok.encode(images)
                columns.append((f"{name} {k} tok", tok.decode(ids)))
    most = max(r["bits"] for r in result["runs"] if r["kind"] == "tokenizer")
    jpeg = min((r for r in result["runs"] if r["name"] == "jpeg"), key=lambda r: abs(r["bits"] - most))
    x_hat, bits = classic.image_round_trip(images, "jpeg", jpeg["setting"]["quality"], cost="payload")
    columns.append((f"JPEG q{jpeg['setting']['quality']} {bits.double().mean():.0f} b", x_hat))
    grid = image_grid(columns, out / "grid.png")
    progress.update()
    return result, grid


# --- audio --------------------------------------------------------------------------------------
def audio_part(names: Sequence[str], out: Path, progress: tqdm) -> tuple[list[dict], Path]:
    """Evaluate each audio codec against Opus on the sample clips; write WAVs and a spectrogram figure."""
    from .evaluation.harness import evaluate, load_clips, run_name
    from .evaluation.plots import spectrogram_plot
    from .hub import load

    files = assets.sample_speech_paths()
    results, panels = [], {}
    toks = sorted(((name, load(name).eval()) for name in names), key=lambda nt: -nt[1].sample_rate)  # 24 kHz first
    for name, tok in toks:
        results.append(evaluate(files[0].parent, tokenizers=[name], codecs=["opus"], out=out / f"audio-{run_name(name)}",
                                num_codebooks=list(AUDIO_CODEBOOKS), metrics=AUDIO_METRICS, rd=True, device="cpu"))
        clips = load_clips(files, tok.sample_rate)
        with torch.no_grad():
            decoded = [tok.decode(tok.encode(c[None]))[0, :, : c.shape[-1]] for c in clips]
        for path, clip, wav in zip(files, clips, decoded):
            assets.save_audio(clip, tok.sample_rate, out / "speech" / f"{path.stem}_original_{tok.sample_rate // 1000}k.wav")
            assets.save_audio(wav, tok.sample_rate, out / "speech" / f"{path.stem}_{run_name(name)}.wav")
        panels.setdefault(f"original ({tok.sample_rate // 1000} kHz)", (clips[0][0], tok.sample_rate))
        panels[f"{name} ({tok.bits_per_second / 1000:g} kbps)"] = (decoded[0][0], tok.sample_rate)
        progress.update()
    figure = spectrogram_plot(panels, out / "spectrograms.png", title=files[0].name)
    return results, figure


# --- the table ----------------------------------------------------------------------------------
def _cells(run: dict, metrics: Sequence[str]) -> str:
    from .evaluation.harness import setting_label

    setting = setting_label(run)
    values = [f"{run['metrics'][m]:.3g}" if m in run["metrics"] else "-" for m in metrics]
    return f"| {run['name']} | {setting} | {run['bits']:.0f} | " + " | ".join(values) + " |"


def _nearest_codec_runs(result: dict) -> list[dict]:
    """Every tokenizer run, then for each classic codec the setting nearest in bits to the largest tokenizer run."""
    from .evaluation.harness import nearest_in_bits

    toks = [r for r in result["runs"] if r["kind"] == "tokenizer"]
    most = max(r["bits"] for r in toks)
    codecs = sorted({r["name"] for r in result["runs"] if r["kind"] == "codec"})
    return toks + [nearest_in_bits([r for r in result["runs"] if r["name"] == c], most) for c in codecs]


def summary(image: dict, audio: list[dict]) -> str:
    """Markdown tables: every tokenizer setting and the nearest-in-bits classic codec setting, with metrics."""
    lines = [f"Images: {image['data']['items']} held-out photos at {image['data']['image_size']} px; codecs at the "
             "setting nearest the largest token count (payload bits).", "",
             "| run | setting | bits/image | PSNR dB | SSIM |", "|---|---|---|---|---|"]
    lines += [_cells(r, ("psnr", "ssim")) for r in _nearest_codec_runs(image)]
    metrics = ("pesq", "stoi", "mel_distance", "dnsmos_ovrl")
    lines += ["", f"Speech: {audio[0]['data']['items']} held-out clips, {audio[0]['data']['seconds']:.1f} s; Opus at "
              "the bitrate nearest the codec's (6 kbps is its floor).", "",
              "| run | setting | bits/s | PESQ | STOI | mel dist | DNSMOS |", "|---|---|---|---|---|---|---|"]
    for result in audio:
        rate = f" @ {result['data']['sample_rate'] // 1000} kHz"
        lines += [_cells({**r, "name": r["name"] + rate}, metrics) for r in _nearest_codec_runs(result)]
    return "\n".join(lines)


def run_demo(out: Path, image_model: str | None = None, audio_model: str | None = None) -> str:
    """Run the shipped (or named) image and audio tokenizers on the samples; write everything to `out`; return the table."""
    from .evaluation.harness import run_name

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    image_names = [image_model] if image_model else shipped_names("image")
    audio_names = [audio_model] if audio_model else shipped_names("audio")
    with tqdm(total=2 + len(audio_names), desc="vtok demo", unit="step") as progress:
        image, grid = image_part(image_names, out, progress)
        audio, spectrograms = audio_part(audio_names, out, progress)
    table = summary(image, audio)
    links = [f"![reconstructions]({grid.name})", "", f"![spectrograms]({spectrograms.name})", "",
             "All settings and the protocol: image/results.md, " + ", ".join(f"audio-{run_name(n)}/results.md" for n in audio_names)
             + "; rate-distortion plots: rd.png beside each."]
    (out / "results.md").write_text("# vtok demo\n\n" + table + "\n\n" + "\n".join(links) + "\n")
    print(table)
    print(f"\nwrote {out}/: grid.png, spectrograms.png, speech/*.wav, results.md, RD plots "
          f"({time.perf_counter() - started:.0f} s)")
    return table
