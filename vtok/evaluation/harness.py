"""`vtok eval`: tokenizers and classic codecs on a folder of images or audio -> results.json, results.md, rd.png.

Every run (one tokenizer at one token count / number of codebooks, or one codec at one quality /
bitrate) reconstructs the same items and is measured by the same `ImageMetrics` or `AudioMetrics`;
the record keeps the protocol of each metric, the bit cost, the tokens and the wall time.
Schema of results.json: see README ("Evaluation").
"""
from __future__ import annotations

import datetime
import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..assets import list_data, load_audio, load_image
from ..metrics import token_statistics
from . import codecs as classic

SCHEMA = "vtok.eval/1"
RD_METRICS = {"image": ("psnr", "ssim", "lpips", "rfid"),
              "audio": ("pesq", "stoi", "mel_distance", "distillmos", "dnsmos_ovrl", "utmos", "wer")}
TABLE_METRICS = {"image": ("psnr", "ssim", "lpips", "rfid"),
                 "audio": ("pesq", "stoi", "mel_distance", "si_sdr", "distillmos", "dnsmos_ovrl", "utmos", "wer", "cer")}


# --- data ---------------------------------------------------------------------------------------
def load_images(files: Sequence[Path], size: int) -> Tensor:
    """Images centre-cropped to a square and resized to size: float (N,3,size,size) in [0,1]."""
    return torch.stack([load_image(p, size=size) for p in files])


def load_clips(files: Sequence[Path], sample_rate: int) -> list[Tensor]:
    """Whole clips, mono, resampled to sample_rate: a list of float (1,T) in [-1,1]."""
    return [load_audio(p, sample_rate)[0] for p in files]


def spread(files: Sequence[Path], limit: int | None) -> list[Path]:
    """`limit` items spread evenly over the sorted list (the first one included), or all of them."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if not limit or limit >= len(files):
        return list(files)
    return [files[i * len(files) // limit] for i in range(limit)]


# --- runs ---------------------------------------------------------------------------------------
def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _record(name: str, kind: str, setting: dict, bits: float, unit: str, metrics: dict, wall: float, **extra: Any) -> dict:
    return {"name": name, "kind": kind, "setting": setting, "bits": bits, "unit": unit, **extra,
            "metrics": metrics, "wall_s": round(wall, 3)}


def _token_summary(ids: Tensor, vocab: int) -> dict:
    stats = token_statistics(ids, vocab)
    keep = ("usage", "perplexity", "entropy_bits", "zipf_exponent")
    return {k: stats[k] for k in keep if k in stats}


def image_tokenizer_runs(tok, name: str, images: Tensor, metrics, num_tokens: Sequence[int | None], batch_size: int,
                         device: torch.device) -> list[dict]:
    """One run per token count (variable-length tokenizers; others at their own count): encode -> decode every
    image, metrics against the originals."""
    runs = []
    if not tok.variable_length:
        num_tokens = [None]  # a fixed-length tokenizer is measured at its own token count
    for k in num_tokens:
        kw = {} if k is None else {"num_tokens": k}
        metrics.reset()
        all_ids, t0 = [], time.perf_counter()
        for s in tqdm(_batches(len(images), batch_size), desc=f"{name} {k or tok.num_tokens} tokens", leave=False):
            x = images[s].to(device)
            with torch.no_grad():
                ids = tok.encode(x, **kw)
                metrics.update(x, tok.decode(ids).clamp(0, 1))
            all_ids.append(ids.cpu())
        wall = time.perf_counter() - t0
        ids = torch.cat(all_ids)
        bits = ids.shape[-1] * tok.bits_per_token
        h, w = images.shape[-2:]
        runs.append(_record(name, "tokenizer", {"num_tokens": ids.shape[-1]}, bits, "bits/image", metrics.compute(), wall,
                            bpp=bits / (h * w), tokens=ids.shape[-1], vocab_size=tok.vocab_size,
                            token_stats=_token_summary(ids, tok.vocab_size)))
    return runs


def image_codec_runs(codec: str, images: Tensor, metrics, target_bits: float, span: float, batch_size: int,
                     device: torch.device, cost: str = "payload") -> tuple[list[dict], dict]:
    """JPEG/WebP at qualities whose measured bits per image (`cost`: payload or whole file) bracket target_bits."""
    pick = classic.qualities_bracketing(images, codec, target_bits, span=span, cost=cost)
    runs = []
    for quality in pick["settings"]:
        metrics.reset()
        bits, t0 = [], time.perf_counter()
        for s in tqdm(_batches(len(images), batch_size), desc=f"{codec} q{quality}", leave=False):
            x_hat, b = classic.image_round_trip(images[s], codec, quality, cost=cost)
            metrics.update(images[s].to(device), x_hat.to(device))
            bits.append(b)
        wall = time.perf_counter() - t0
        mean_bits = float(torch.cat(bits).double().mean())
        h, w = images.shape[-2:]
        runs.append(_record(codec, "codec", {"quality": quality}, mean_bits, "bits/image", metrics.compute(), wall,
                            bpp=mean_bits / (h * w)))
    return runs, {**classic.protocol(codec, quality=pick["settings"][0], cost=cost), "quality": pick["settings"],
                  "bracketed": pick["bracketed"]}


def audio_tokenizer_runs(tok, name: str, clips: list[Tensor], metrics, num_codebooks: Sequence[int | None],
                         device: torch.device) -> list[dict]:
    """One run per number of codebooks (single-codebook codecs: one run): encode -> decode every clip whole,
    metrics against the originals."""
    runs = []
    if tok.num_codebooks == 1:
        num_codebooks = [None]  # a single-codebook codec is measured at its own rate
    for q in num_codebooks:
        kw = {} if q is None else {"num_codebooks": q}
        metrics.reset()
        all_ids, t0 = [], time.perf_counter()
        for wav in tqdm(clips, desc=f"{name} {q or tok.num_codebooks} codebooks", leave=False):
            x = wav[None].to(device)
            with torch.no_grad():
                ids = tok.encode(x, **kw)
                y = tok.decode(ids)[..., : x.shape[-1]]
            metrics.update(x.cpu(), y.cpu(), tok.sample_rate)
            all_ids.append(ids[0].cpu())
        wall = time.perf_counter() - t0
        used = all_ids[0].shape[0]
        bits = used * tok.tokens_per_second * math.log2(tok.vocab_size)  # bits_per_token counts all Q codebooks
        runs.append(_record(name, "tokenizer", {"num_codebooks": used}, bits, "bits/s", metrics.compute(), wall,
                            tokens_per_second=used * tok.tokens_per_second, vocab_size=tok.vocab_size,
                            token_stats=_token_summary(torch.cat(all_ids, dim=-1)[None], tok.vocab_size)))
    return runs


def audio_codec_runs(codec: str, clips: list[Tensor], sample_rate: int, metrics, target_bits: float,
                     span: float, cost: str = "payload") -> tuple[list[dict], dict]:
    """Opus at bitrates whose measured bits/s over all clips (`cost`: payload or whole file) bracket target_bits."""
    joined = torch.cat(clips, dim=-1)[None]
    pick = classic.qualities_bracketing(joined, codec, target_bits, span=span, sample_rate=sample_rate, cost=cost)
    seconds = sum(c.shape[-1] for c in clips) / sample_rate
    runs = []
    for bitrate in pick["settings"]:
        metrics.reset()
        total_bits, t0 = 0.0, time.perf_counter()
        for wav in tqdm(clips, desc=f"{codec} {bitrate} b/s", leave=False):
            y, bps = classic.audio_round_trip(wav[None], sample_rate, codec, bitrate, cost=cost)
            metrics.update(wav[None], y, sample_rate)
            total_bits += float(bps[0]) * wav.shape[-1] / sample_rate
        wall = time.perf_counter() - t0
        runs.append(_record(codec, "codec", {"bitrate": bitrate}, total_bits / seconds, "bits/s", metrics.compute(), wall))
    return runs, {**classic.protocol(codec, bitrate=pick["settings"][0], sample_rate=sample_rate, cost=cost),
                  "bitrate": pick["settings"], "bracketed": pick["bracketed"]}


def _bracket(runs: list[dict], budget: float | None) -> tuple[float, float]:
    """(target, span) for classic codecs: around the tokenizers' bit costs, or the given budget."""
    rates = [r["bits"] for r in runs] or ([budget] if budget else [])
    if not rates:
        raise ValueError("--codec without a tokenizer needs --bits (bits per image, or bits/s for audio)")
    lo, hi = min(rates), max(rates)
    return math.sqrt(lo * hi), max(2.0, 1.5 * math.sqrt(hi / lo))


# --- the whole evaluation -----------------------------------------------------------------------
def evaluate(
    data: str | Path,
    tokenizers: Sequence[str] = (),
    codecs: Sequence[str] = (),
    out: str | Path = "eval_out",
    num_tokens: Sequence[int] | None = None,
    num_codebooks: Sequence[int] | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    image_size: int | None = None,
    sample_rate: int | None = None,
    bits: float | None = None,
    codec_cost: str = "payload",
    rd: bool = False,
    metrics: Sequence[str] | None = None,
    rfid: bool = True,
    rfid_reference: str | None = None,
    inception_weights: str | None = None,
    lpips_weights: str | None = None,
    utmos_weights: str | None = None,
    device: str | None = None,
) -> dict:
    """Measure tokenizers and classic codecs on `data`; write results.json, results.md (and rd.png); return the record."""
    from ..hub import load

    if not tokenizers and not codecs:
        raise ValueError("vtok eval: expected at least one --tokenizer or --codec")
    modality, files = list_data(data)
    files = spread(files, limit)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    toks = {run_name(name): load(name).eval().to(dev) for name in tokenizers}
    for name, tok in toks.items():
        if tok.modality != modality:
            raise ValueError(f"--tokenizer {name}: an {tok.modality} tokenizer, but --data holds {modality}")
    wrong = [c for c in codecs if c not in (classic.IMAGE_CODECS if modality == "image" else classic.AUDIO_CODECS)]
    if wrong:
        raise ValueError(f"--codec {wrong}: not a classic {modality} codec; expected any of "
                         f"{classic.IMAGE_CODECS if modality == 'image' else classic.AUDIO_CODECS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs: list[dict] = []
    codec_protocols: dict[str, dict] = {}
    if modality == "image":
        sizes = {t.image_size for t in toks.values()}
        if image_size is None and len(sizes) > 1:
            raise ValueError(f"tokenizers of different image sizes {sorted(sizes)}: pass --image-size")
        size = image_size or (sizes.pop() if sizes else 256)
        items = load_images(files, size)
        data_info = {"image_size": size, "preprocessing": "centre square crop, bicubic resize to image_size, 8-bit RGB -> [0,1]"}
        meter = _image_metrics(items, out, rfid, rfid_reference, inception_weights, lpips_weights, batch_size, dev)
        for name, tok in toks.items():
            runs += image_tokenizer_runs(tok, name, items, meter, num_tokens or [None], batch_size, dev)
        target, span = _bracket(runs, bits) if codecs else (0, 0)
        for codec in codecs:
            new, codec_protocols[codec] = image_codec_runs(codec, items, meter, target, span, batch_size, dev, codec_cost)
            runs += new
    else:
        rates = {t.sample_rate for t in toks.values()}
        if sample_rate is None and len(rates) > 1:
            raise ValueError(f"tokenizers of different sample rates {sorted(rates)}: evaluate them separately or pass --sample-rate")
        rate = sample_rate or (rates.pop() if rates else 24000)
        if any(t.sample_rate != rate for t in toks.values()):
            raise ValueError(f"--sample-rate {rate}: the tokenizers run at {sorted({t.sample_rate for t in toks.values()})}")
        items = load_clips(files, rate)
        data_info = {"sample_rate": rate, "seconds": sum(c.shape[-1] for c in items) / rate,
                     "preprocessing": "whole clips, mixed to mono, resampled to sample_rate (torchaudio sinc)"}
        from ..metrics.audio import DEFAULT_METRICS, AudioMetrics

        meter = AudioMetrics(tuple(metrics or DEFAULT_METRICS) + (("utmos",) if utmos_weights and "utmos" not in (metrics or ()) else ()),
                             utmos_weights=utmos_weights, device=dev)
        for name, tok in toks.items():
            runs += audio_tokenizer_runs(tok, name, items, meter, num_codebooks or [None], dev)
        target, span = _bracket(runs, bits) if codecs else (0, 0)
        for codec in codecs:
            new, codec_protocols[codec] = audio_codec_runs(codec, items, rate, meter, target, span, codec_cost)
            runs += new
    result = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {"vtok": _version(), "torch": torch.__version__, "device": str(dev), "python": platform.python_version()},
        "data": {"path": str(data), "modality": modality, "items": len(files), **data_info},
        "protocol": {"metrics": meter.protocol(), "codecs": codec_protocols,
                     "bits": ("tokenizers: tokens x log2(vocab) per image, no entropy coding; "
                              if modality == "image" else "tokenizers: codebooks x frames/s x log2(vocab); ")
                     + ("codecs: coded data only (no file headers/container)" if codec_cost == "payload"
                        else "codecs: the whole encoded file, headers and container included")},
        "runs": runs,
        "wall_s": round(time.perf_counter() - started, 3),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown(result))
    if rd:
        result["rd_plot"] = str(rd_figure(result, out / "rd.png"))
        (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def run_name(source: str) -> str:
    """A short name for a tokenizer source: a registry/Hub name as given, a local directory by its folder name
    (a training run's `export` directory by its run's name)."""
    path = Path(source).resolve()
    if not Path(source).exists():
        return source
    return path.parent.name if path.name == "export" else path.name


def _image_metrics(images: Tensor, out: Path, rfid: bool, reference: str | None, inception: str | None,
                   lpips_weights: str | None, batch_size: int, device: torch.device):
    """ImageMetrics whose rFID reference (the originals' statistics) is computed once, saved to out, and reused."""
    from ..metrics.image import RFID, ImageMetrics

    if rfid and reference is None:
        if len(images) < 2:
            raise ValueError(f"rFID needs at least 2 images, got {len(images)}; pass --no-rfid")
        ref = RFID(weights=inception).to(device)
        for s in tqdm(_batches(len(images), batch_size), desc="rFID reference", leave=False):
            ref.update(images[s].to(device), real=True)
        reference = str(ref.save_reference(out / "rfid_reference.safetensors"))
    return ImageMetrics(lpips_weights=lpips_weights, rfid=rfid, rfid_reference=reference,
                        inception_weights=inception).to(device)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vtok")
    except PackageNotFoundError:
        return "unknown"


# --- reports ------------------------------------------------------------------------------------
def nearest_in_bits(runs: Sequence[dict], bits: float) -> dict:
    """The run whose bits are nearest `bits` on a log scale (the codec setting to set beside a tokenizer)."""
    return min(runs, key=lambda r: abs(math.log(r["bits"] / bits)))


def setting_label(run: dict) -> str:
    """A run's setting as text, e.g. "tokens 8" or "quality 5"."""
    return ", ".join(f"{k.replace('num_', '')} {v}" for k, v in run["setting"].items())


def markdown(result: dict) -> str:
    """results.md: what was measured on what, one table row per run, then the protocol."""
    modality, data = result["data"]["modality"], result["data"]
    cols = [m for m in TABLE_METRICS[modality] if any(m in r["metrics"] for r in result["runs"])]
    size = f"{data['image_size']}px" if modality == "image" else f"{data['seconds']:.1f} s at {data['sample_rate']} Hz"
    lines = [f"# vtok eval: {data['items']} {modality} items from {data['path']} ({size})", "",
             f"{result['created']}, {result['environment']['device']}, vtok {result['environment']['vtok']}, "
             f"torch {result['environment']['torch']}", ""]
    unit = result["runs"][0]["unit"] if result["runs"] else ""
    head = ["run", "setting", unit] + (["bpp"] if modality == "image" else []) + cols + ["wall s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        cells = [r["name"], setting_label(r), f"{r['bits']:.0f}"] + ([f"{r['bpp']:.4f}"] if modality == "image" else [])
        cells += [f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "-" for m in cols] + [f"{r['wall_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Protocol", "", f"- bits: {result['protocol']['bits']}", f"- data: {data['preprocessing']}"]
    for name, how in result["protocol"]["metrics"].items():
        lines.append(f"- {name}: {json.dumps(how) if isinstance(how, dict) else how}")
    for name, how in result["protocol"]["codecs"].items():
        lines.append(f"- {name}: {json.dumps(how)}")
    return "\n".join(lines) + "\n"


def rd_figure(result: dict, path: Path) -> Path:
    """Rate-distortion PNG: one curve per tokenizer (across its settings) and per classic codec."""
    from .plots import rd_plot

    modality = result["data"]["modality"]
    curves: dict[str, list[dict]] = {}
    for r in result["runs"]:
        curves.setdefault(r["name"], []).append({"bits": r["bits"], **r["metrics"]})
    ys = [m for m in RD_METRICS[modality] if any(m in p for c in curves.values() for p in c)]
    unit = result["runs"][0]["unit"]
    xlabel = "bits per image" if unit == "bits/image" else "bits per second"
    return rd_plot(curves, x="bits", ys=ys, out=path, xlabel=xlabel,
                   title=f"{result['data']['items']} {modality} items from {Path(result['data']['path']).name}",
                   baselines=list(result["protocol"]["codecs"]))
