"""Rate-distortion plots: tokenizers and classic codecs on the same axes, one PNG."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

X_LABELS = {
    "bits": "bits per image",
    "bits_per_image": "bits per image",
    "bpp": "bits per pixel",
    "bits_per_second": "bits/s",
    "bps": "bits/s",
    "kbps": "kbit/s",
    "tokens": "tokens per image",
}
Y_LABELS = {
    "psnr": "PSNR (dB) ↑",
    "ssim": "SSIM ↑",
    "lpips": "LPIPS ↓",
    "rfid": "rFID ↓",
    "fid": "FID ↓",
    "pesq": "PESQ ↑",
    "stoi": "STOI ↑",
    "dnsmos": "DNSMOS ↑",
    "utmos": "UTMOS ↑",
    "si_sdr": "SI-SDR (dB) ↑",
    "mel_distance": "mel distance ↓",
    "dnsmos_ovrl": "DNSMOS OVRL ↑",
    "distillmos": "DistillMOS ↑",
    "wer": "WER ↓",
}
CODEC_NAMES = ("jpeg", "webp", "opus")


def _value(point: Mapping, key: str) -> float | None:
    v = point.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _is_codec(name: str, baselines: Iterable[str] | None) -> bool:
    if baselines is not None:
        return name in set(baselines)
    return name.lower().split()[0].split("-")[0] in CODEC_NAMES


def _save(fig, out: str | Path, dpi: int) -> Path:
    """Lay out and write a matplotlib Figure as PNG; returns the path."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out


def rd_plot(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    x: str = "bits",
    ys: Sequence[str] = ("psnr",),
    out: str | Path = "rd.png",
    title: str | None = None,
    xlabel: str | None = None,
    baselines: Iterable[str] | None = None,
    panel_size: tuple[float, float] = (5.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Write one PNG with a subplot per metric in `ys`: {curve name: [{x: ..., metric: ...}, ...]} -> path.

    Each curve is drawn with markers and lines in order of x (a variable-length tokenizer is one
    curve across its token counts). Classic codecs (names starting with jpeg/webp/opus, or the
    names in `baselines`) are dashed with hollow markers. x is log-scaled when its positive values
    span more than 10x. A metric with no value in any curve is skipped; none left is a ValueError.
    The image is (len(kept ys) * panel_size[0] * dpi) x (panel_size[1] * dpi) pixels.
    """
    # a bare Figure renders with Agg and leaves pyplot's global backend and figure list alone
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    if isinstance(ys, str):
        ys = (ys,)
    if not curves:
        raise ValueError("rd_plot needs at least one curve, got none")
    data: dict[str, dict[str, list[tuple[float, float, str | None]]]] = {}
    for y in ys:
        per_curve = {}
        for name, points in curves.items():
            pts = [(_value(p, x), _value(p, y), p.get("label")) for p in points]
            pts = sorted((px, py, lab) for px, py, lab in pts if px is not None and py is not None)
            if pts:
                per_curve[name] = pts
        if per_curve:
            data[y] = per_curve
    if not data:
        raise ValueError(f"no curve has a value for x={x!r} together with any of {list(ys)}")

    xs = [px for per_curve in data.values() for pts in per_curve.values() for px, _, _ in pts if px > 0]
    log_x = bool(xs) and max(xs) / min(xs) > 10 and all(
        px > 0 for per_curve in data.values() for pts in per_curve.values() for px, _, _ in pts)

    styles = {}
    prop = rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*Xh<>p"
    for k, name in enumerate(curves):
        codec = _is_codec(name, baselines)
        color = prop[k % len(prop)]
        styles[name] = dict(color=color, marker=markers[k % len(markers)], linestyle="--" if codec else "-",
                            markerfacecolor="none" if codec else color, markersize=6, linewidth=1.5)

    w, h = panel_size
    fig = Figure(figsize=(w * len(data), h), dpi=dpi)
    axes = fig.subplots(1, len(data), squeeze=False, sharex=True)
    for ax, (y, per_curve) in zip(axes[0], data.items()):
        for name, pts in per_curve.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, **styles[name])
            for px, py, lab in pts:
                if lab is not None:
                    ax.annotate(str(lab), (px, py), textcoords="offset points", xytext=(3, 3), fontsize=7,
                                color=styles[name]["color"])
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel or X_LABELS.get(x, x))
        ax.set_ylabel(Y_LABELS.get(y, y))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, out, dpi)


def token_stats_plot(ids, vocab_size: int, out: str | Path, title: str | None = None) -> Path:
    """PNG of token statistics of ids (N, L) or (N, Q, T): code rank vs frequency (log-log, Zipf fit) and per-position entropy."""
    import torch
    from matplotlib.figure import Figure

    from ..metrics.codebook import token_statistics

    stats = token_statistics(ids, vocab_size)
    first = (ids if ids.ndim == 2 else ids[:, 0]).reshape(-1)  # codebook 0 for (N, Q, T)
    freq = torch.bincount(first, minlength=vocab_size).double().sort(descending=True).values
    freq = freq[freq > 0] / freq.sum()
    fig = Figure(figsize=(10, 4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    rank = torch.arange(1, freq.numel() + 1, dtype=torch.float64)
    ax1.loglog(rank, freq, ".", ms=3, label="codes")
    s_exp = stats["zipf_exponent"] if ids.ndim == 2 or not isinstance(stats["zipf_exponent"], list) else stats["zipf_exponent"][0]
    if math.isfinite(s_exp):
        # the least-squares line in log-log passes through the means of log rank and log frequency
        fit = (freq.log().mean() + s_exp * rank.log().mean() - s_exp * rank.log()).exp()
        ax1.loglog(rank, fit, "-", lw=1, label=f"Zipf fit, s = {s_exp:.2f}")
    usage = stats["usage"] if not isinstance(stats["usage"], list) else stats["usage"][0]
    ax1.set(xlabel="code rank", ylabel="frequency", title=f"{freq.numel()} of {vocab_size} codes used ({usage:.0%})")
    ax1.legend(fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    entropy = stats["per_position_entropy_bits"]
    ax2.plot(range(len(entropy)), entropy, "-o" if len(entropy) <= 64 else "-", ms=3)
    ax2.axhline(stats["max_entropy_bits"], color="gray", ls="--", lw=1, label=f"log2 vocab = {stats['max_entropy_bits']:.1f}")
    ax2.set(xlabel="token position", ylabel="entropy over items (bits)", title="per-position entropy")
    ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def spectrogram_plot(signals: Mapping[str, tuple], out: str | Path, title: str | None = None,
                     n_fft: int = 1024, dpi: int = 100) -> Path:
    """PNG with one log-magnitude spectrogram (dB, 0..Nyquist kHz) per {label: (wav float (T,) in [-1,1], sample_rate)}."""
    import torch
    from matplotlib.figure import Figure

    if not signals:
        raise ValueError("spectrogram_plot needs at least one signal, got none")
    fig = Figure(figsize=(10, 2.2 * len(signals)), dpi=dpi)
    axes = fig.subplots(len(signals), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (label, (wav, rate)) in zip(axes, signals.items()):
        wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
        hop = n_fft // 4
        spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5))
        top = float(db.max())
        ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                  extent=(0, wav.numel() / rate, 0, rate / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    return _save(fig, out, dpi)
