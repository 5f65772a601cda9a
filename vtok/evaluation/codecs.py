"""Classic codecs (JPEG, WebP, Opus) as round trips with their exact bit cost: the baselines of `vtok eval`.

Bits are counted from the encoded bytes, never from a nominal setting. ``cost="file"`` (the default)
counts the whole file, headers and container included; ``cost="payload"`` counts only the coded
data (JPEG scan data, the WebP ``VP8 `` chunk, the Opus packets), which is what a tokenizer's
``num_tokens * bits_per_token`` compares with when headers would be shared or implied.
"""
from __future__ import annotations

import functools
import io
import math
import numbers
import shutil
import subprocess
import warnings
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

IMAGE_CODECS = ("jpeg", "webp")
AUDIO_CODECS = ("opus",)
CODECS = IMAGE_CODECS + AUDIO_CODECS
COSTS = ("file", "payload")
Cost = Literal["file", "payload"]

QUALITY_RANGE = {"jpeg": (1, 100), "webp": (0, 100)}
JPEG_SETTINGS = {"subsampling": "4:2:0", "optimize": False, "progressive": False}
WEBP_SETTINGS = {"lossless": False, "method": 4}

OPUS_SAMPLE_RATE = 48_000
# libsndfile maps compression_level c in [0, 1] to OPUS_SET_BITRATE((1 - c) * 250000 + 6000) per channel.
OPUS_BITRATE_RANGE = (6_000, 256_000)
# log-spaced bitrates (about 8 % apart) that bracketing searches over
OPUS_BITRATE_GRID = tuple(sorted({int(round(6000 * (256 / 6) ** (i / 48) / 100)) * 100 for i in range(49)}))


# ---------------------------------------------------------------- checks
def _check_codec(codec: str, allowed: Sequence[str]) -> str:
    name = str(codec).lower()
    if name not in allowed:
        raise ValueError(f"unknown codec {codec!r}: expected one of {list(allowed)}")
    return name


def _check_cost(cost: str) -> str:
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {list(COSTS)}, got {cost!r}")
    return cost


def _check_quality(codec: str, quality: float) -> int:
    lo, hi = QUALITY_RANGE[codec]
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or quality != int(quality):
        raise ValueError(f"{codec} quality must be an integer in [{lo}, {hi}], got {quality!r}")
    if not lo <= quality <= hi:
        raise ValueError(f"{codec} quality must be in [{lo}, {hi}], got {quality}")
    return int(quality)


def _check_bitrate(bitrate: float) -> int:
    lo, hi = OPUS_BITRATE_RANGE
    if isinstance(bitrate, bool) or not isinstance(bitrate, (int, float)) or not lo <= bitrate <= hi:
        raise ValueError(f"opus bitrate must be a number of bits/s in [{lo}, {hi}], got {bitrate!r}")
    return int(round(bitrate))


def _check_signal(x: Tensor, name: str, shape: str, channels: int, lo: float) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {shape}, got {type(x).__name__}")
    if x.dim() != 4 - (channels == 1) or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}, expected {shape}")
    xmin, xmax = float(x.min()), float(x.max())
    if not (lo <= xmin and xmax <= 1.0):  # also catches NaN
        raise ValueError(f"{name} values must lie in [{lo:g}, 1], got [{xmin:.4g}, {xmax:.4g}]")
    return x


# ---------------------------------------------------------------- images
def _encode_image(img: np.ndarray, codec: str, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    pil = Image.fromarray(img)  # uint8 (H,W,3) -> RGB
    if codec == "jpeg":
        pil.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    else:
        pil.save(buf, format="WEBP", quality=quality, lossless=False, method=WEBP_SETTINGS["method"])
    return buf.getvalue()


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg_payload_bytes(data: bytes) -> int:
    """Bytes of entropy-coded scan data in a JPEG file (markers and tables excluded)."""
    i, n, scan = 2, len(data), 0
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ValueError("malformed JPEG: expected a marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:  # SOS: scan data runs to the next marker that is not a stuffed 0x00 or an RST
            start = i
            while i + 1 < n and not (data[i] == 0xFF and data[i + 1] != 0x00 and not 0xD0 <= data[i + 1] <= 0xD7):
                i += 1
            scan += i - start
    return scan


def _webp_payload_bytes(data: bytes) -> int:
    """Bytes of the coded bitstream chunks of a WebP file (RIFF container and metadata excluded)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("malformed WebP: missing RIFF/WEBP header")
    i, payload = 12, 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i + 4:i + 8], "little")
        if data[i:i + 4] in (b"VP8 ", b"VP8L", b"ALPH"):
            payload += size
        i += 8 + size + (size & 1)
    return payload


def _image_bits(data: bytes, codec: str, cost: str) -> int:
    if cost == "file":
        return 8 * len(data)
    return 8 * (_jpeg_payload_bytes(data) if codec == "jpeg" else _webp_payload_bytes(data))


def image_round_trip(x: Tensor, codec: str, quality: int, cost: Cost = "file") -> tuple[Tensor, Tensor]:
    """JPEG/WebP round trip: x float (B,3,H,W) in [0,1] -> (x_hat same shape in [0,1], bits (B,) float64).

    x is rounded to 8-bit RGB before encoding (that rounding is part of the codec's error).
    bits = 8 * encoded bytes per image: the whole file with headers (JFIF, quantization and
    Huffman tables; RIFF) for ``cost="file"``, only the coded data for ``cost="payload"``.
    JPEG: libjpeg(-turbo) through Pillow, 4:2:0 chroma subsampling, standard Huffman tables,
    baseline. WebP: lossy libwebp, method 4. Quality: JPEG 1..100, WebP 0..100.
    """
    codec = _check_codec(codec, IMAGE_CODECS)
    quality = _check_quality(codec, quality)
    cost = _check_cost(cost)
    _check_signal(x, "x", "(B,3,H,W)", 3, 0.0)
    imgs = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    outs, bits = [], []
    for img in imgs:
        data = _encode_image(np.ascontiguousarray(img), codec, quality)
        outs.append(_decode_image(data))
        bits.append(_image_bits(data, codec, cost))
    x_hat = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(x.dtype) / 255.0
    return x_hat.to(x.device), torch.tensor(bits, dtype=torch.float64)


# ---------------------------------------------------------------- audio
@functools.lru_cache(maxsize=1)
def _soundfile_opus() -> str | None:
    """Vendor string of the Opus encoder inside libsndfile, or None when this build cannot write Opus."""
    try:
        import soundfile as sf

        if "OPUS" not in sf.available_subtypes("OGG"):
            return None
        buf = io.BytesIO()
        sf.write(buf, np.zeros(960, np.float32), OPUS_SAMPLE_RATE, format="OGG", subtype="OPUS")
        data = buf.getvalue()
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return None
    i = data.find(b"OpusTags")
    if i < 0:
        return "libopus (unknown version)"
    n = int.from_bytes(data[i + 8:i + 12], "little")
    return data[i + 12:i + 12 + n].decode("utf-8", "replace")


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def opus_backend(backend: str = "auto") -> str:
    """Which Opus implementation a round trip uses: 'soundfile' (libsndfile) or 'ffmpeg' (libopus)."""
    if backend not in ("auto", "soundfile", "ffmpeg"):
        raise ValueError(f"backend must be 'auto', 'soundfile' or 'ffmpeg', got {backend!r}")
    if backend in ("auto", "soundfile") and _soundfile_opus() is not None:
        return "soundfile"
    if backend in ("auto", "ffmpeg") and _ffmpeg() is not None:
        return "ffmpeg"
    raise RuntimeError(
        "Opus is unavailable: this libsndfile build cannot write Ogg/Opus (needs libsndfile >= 1.0.29 "
        "with Opus; the soundfile>=0.12 wheels bundle one) and no `ffmpeg` is on PATH"
        + ("" if backend == "auto" else f" (backend={backend!r} was requested)"))


def _opus_soundfile(x48: np.ndarray, bitrate: int) -> tuple[bytes, np.ndarray]:
    import soundfile as sf

    # +0.5 so libsndfile's int() truncation lands on `bitrate` itself; clamp for the top of the range
    level = min(max(1.0 - (bitrate - OPUS_BITRATE_RANGE[0] + 0.5) / 250_000.0, 0.0), 1.0)
    buf = io.BytesIO()
    sf.write(buf, x48, OPUS_SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=level)
    data = buf.getvalue()
    y, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)  # pre-skip is removed by the decoder
    return data, y


def _opus_ffmpeg(x48: np.ndarray, bitrate: int) -> tuple[bytes, np.ndarray]:
    ffmpeg = _ffmpeg()
    raw = ["-f", "f32le", "-ar", str(OPUS_SAMPLE_RATE), "-ac", "1"]
    enc = [ffmpeg, "-hide_banner", "-loglevel", "error", *raw, "-i", "pipe:0", "-c:a", "libopus",
           "-b:a", str(bitrate), "-vbr", "on", "-compression_level", "10", "-application", "audio",
           "-f", "ogg", "pipe:1"]
    done = subprocess.run(enc, input=x48.astype("<f4").tobytes(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not encode Opus (is it built with libopus?): {done.stderr.decode()[-500:]}")
    data = done.stdout
    if _soundfile_opus() is not None:  # decode as the soundfile path does
        import soundfile as sf

        return data, sf.read(io.BytesIO(data), dtype="float32", always_2d=False)[0]
    dec = [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0", *raw, "pipe:1"]
    out = subprocess.run(dec, input=data, capture_output=True, check=True).stdout
    return data, np.frombuffer(out, dtype="<f4").copy()


def _ogg_payload_bytes(data: bytes) -> int:
    """Bytes of Opus audio packets in an Ogg file (page headers, OpusHead and OpusTags excluded)."""
    sizes, current, i = [], 0, 0
    while i + 27 <= len(data):
        if data[i:i + 4] != b"OggS":
            raise ValueError("malformed Ogg stream: expected 'OggS'")
        nseg = data[i + 26]
        lacing = data[i + 27:i + 27 + nseg]
        for v in lacing:
            current += v
            if v < 255:
                sizes.append(current)
                current = 0
        i += 27 + nseg + sum(lacing)
    return sum(sizes[2:])


def audio_round_trip(
    wav: Tensor,
    sample_rate: int,
    codec: str = "opus",
    bitrate: int = 24_000,
    cost: Cost = "file",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Opus round trip: wav float (B,1,T) in [-1,1] at sample_rate -> (wav_hat (B,1,T) in [-1,1], bits/s (B,)).

    Each clip is resampled to 48 kHz (torchaudio sinc resampling), Ogg/Opus encoded in VBR mode
    at the target ``bitrate`` (bits/s, 6000..256000), decoded, resampled back and cut to T samples.
    The decoder drops the encoder's pre-skip, so wav_hat is aligned with wav sample by sample in
    CELT mode; SILK/hybrid modes (below ~56 kbit/s on speech) keep libopus' own internal resampler
    delay, about -2.3 (wideband) or +1.8 (narrowband) samples at 48 kHz, which is not compensated.
    bits/s = 8 * bytes / (T / sample_rate): the whole Ogg file (container pages, OpusHead and the
    padded OpusTags header, a fixed ~1 kB) for ``cost="file"``, only the Opus packets for "payload".
    """
    import torchaudio.functional as AF

    _check_codec(codec, AUDIO_CODECS)
    bitrate = _check_bitrate(bitrate)
    cost = _check_cost(cost)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    _check_signal(wav, "wav", "(B,1,T)", 1, -1.0)
    run = _opus_soundfile if opus_backend(backend) == "soundfile" else _opus_ffmpeg
    sample_rate, T = int(sample_rate), wav.shape[-1]
    x = wav.detach().float().cpu()[:, 0]
    x48 = AF.resample(x, sample_rate, OPUS_SAMPLE_RATE) if sample_rate != OPUS_SAMPLE_RATE else x
    outs, bits = [], []
    for clip in x48.numpy():
        data, y = run(np.ascontiguousarray(clip), bitrate)
        y = torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(-1))
        n = clip.shape[-1]  # the decoder returns exactly n samples; pad/cut guards other decoders
        y = torch.nn.functional.pad(y[:n], (0, max(0, n - y.shape[0])))
        outs.append(y)
        nbytes = len(data) if cost == "file" else _ogg_payload_bytes(data)
        bits.append(8.0 * nbytes * sample_rate / T)
    y48 = torch.stack(outs)
    y = AF.resample(y48, OPUS_SAMPLE_RATE, sample_rate) if sample_rate != OPUS_SAMPLE_RATE else y48
    y = torch.nn.functional.pad(y[:, :T], (0, max(0, T - y.shape[-1]))).clamp(-1, 1)
    return y[:, None].to(device=wav.device, dtype=wav.dtype), torch.tensor(bits, dtype=torch.float64)


# ---------------------------------------------------------------- bracketing
def _grid(codec: str) -> tuple[int, ...]:
    if codec == "opus":
        return OPUS_BITRATE_GRID
    lo, hi = QUALITY_RANGE[codec]
    return tuple(range(lo, hi + 1))


def qualities_bracketing(
    data: Tensor,
    codec: str,
    target: float,
    n: int = 5,
    span: float = 2.0,
    sample_rate: int | None = None,
    cost: Cost = "file",
) -> dict:
    """Pick n codec settings whose measured mean rate on `data` brackets `target` (some below, some above).

    data: images float (B,3,H,W) in [0,1] with target in bits per image (jpeg/webp; settings are
    qualities), or audio float (B,1,T) in [-1,1] at `sample_rate` with target in bits/s (opus;
    settings are bitrates). About n//2 settings cost <= target and the rest > target, spread
    geometrically out to target/span and target*span. Returns {"codec", "target", "unit",
    "setting", "settings", "rates", "bracketed"}, settings ascending; bracketed is False (with a
    warning) when the codec cannot reach below or above the target on this data.
    """
    codec = _check_codec(codec, CODECS)
    cost = _check_cost(cost)
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive number of bits, got {target!r}")
    if not (isinstance(span, (int, float)) and span > 1):
        raise ValueError(f"span must be > 1, got {span!r}")
    if codec == "opus":
        if sample_rate is None:
            raise ValueError("opus bracketing needs the sample_rate of `data`")
        _check_signal(data, "data", "(B,1,T)", 1, -1.0)
        measure: Callable[[int], float] = lambda s: float(audio_round_trip(data, sample_rate, codec, s, cost)[1].mean())
    else:
        _check_signal(data, "data", "(B,3,H,W)", 3, 0.0)
        measure = lambda s: float(image_round_trip(data, codec, s, cost)[1].mean())

    grid, rates = _grid(codec), {}

    def rate(i: int) -> float:
        if i not in rates:
            rates[i] = measure(grid[i])
        return rates[i]

    def first_above(r: float) -> int:
        """Smallest grid index whose rate exceeds r (len(grid) if none); rate is ~monotone in the setting."""
        lo, hi = 0, len(grid)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if rate(mid) <= r else (lo, mid)
        return lo

    # rate goals log-spaced on each side: target/span^(k/n_below) below, target*span^(k/n_above) above
    n_below, n_above = n // 2, n - n // 2
    cross = first_above(target)
    chosen = {first_above(target / span ** (k / n_below)) - 1 for k in range(1, n_below + 1)}
    chosen |= {first_above(target * span ** (k / n_above)) for k in range(1, n_above + 1)}
    chosen = {i for i in chosen if 0 <= i < len(grid)}
    bracketed = 0 < cross < len(grid)
    if bracketed:  # the settings right at the crossing keep both sides when the outer goals are out of reach
        chosen |= {cross - 1} if min(chosen, default=cross) >= cross else set()
        chosen |= {cross} if max(chosen, default=cross - 1) < cross else set()
    # fill up with the unused settings nearest the crossing when settings coincide or the target is out of reach
    for i in sorted(range(len(grid)), key=lambda i: abs(i - cross + 0.5)):
        if len(chosen) >= min(n, len(grid)):
            break
        chosen.add(i)
    if not bracketed:
        side = "below the lowest" if cross == 0 else "above the highest"
        warnings.warn(f"{codec}: target {target:.4g} is {side} rate this codec reaches on this data "
                      f"(cost={cost!r}); returning the nearest settings", stacklevel=2)
    idx = sorted(chosen)
    return {
        "codec": codec,
        "target": float(target),
        "unit": "bits/s" if codec == "opus" else "bits per image",
        "setting": "bitrate" if codec == "opus" else "quality",
        "settings": [grid[i] for i in idx],
        "rates": [rate(i) for i in idx],
        "bracketed": bracketed,
    }


# ---------------------------------------------------------------- protocol
def protocol(
    codec: str,
    quality: int | None = None,
    bitrate: int | None = None,
    sample_rate: int | None = None,
    cost: Cost = "file",
    backend: str = "auto",
) -> dict:
    """Settings, libraries and bit accounting of a classic-codec run, as plain JSON for every result."""
    codec = _check_codec(codec, CODECS)
    cost = _check_cost(cost)
    if codec in IMAGE_CODECS:
        import PIL
        from PIL import features

        out = {
            "codec": codec,
            "library": f"Pillow {PIL.__version__}",
            "input": "float [0,1] rounded to 8-bit RGB",
            "unit": "bits per image",
            "bits": ("8 * whole file bytes, headers included" if cost == "file" else
                     "8 * coded bytes: JPEG entropy-coded scan data (no markers/tables)" if codec == "jpeg" else
                     "8 * coded bytes: VP8 chunk (no RIFF container)"),
        }
        if codec == "jpeg":
            turbo = features.version("libjpeg_turbo")
            out["encoder"] = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
            out.update(JPEG_SETTINGS, huffman="standard tables")
        else:
            out["encoder"] = f"libwebp {features.version('webp')}"
            out.update(WEBP_SETTINGS)
        if quality is not None:
            out["quality"] = _check_quality(codec, quality)
        return out | {"cost": cost}

    import soundfile as sf
    import torchaudio

    name = opus_backend(backend)
    if name == "soundfile":
        lib = f"{_soundfile_opus()} via libsndfile {sf.__libsndfile_version__} (soundfile {sf.__version__})"
        control = ("soundfile compression_level = 1 - (bitrate - 6000) / 250000; libsndfile sets "
                   "OPUS_SET_BITRATE((1 - level) * 250000 + 6000), complexity 10, OPUS_APPLICATION_AUDIO")
    else:
        lib = subprocess.run([_ffmpeg(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
        control = "ffmpeg -c:a libopus -b:a BITRATE -vbr on -compression_level 10 -application audio"
    out = {
        "codec": "opus",
        "backend": name,
        "library": lib,
        "container": "Ogg",
        "mode": "VBR (libopus default)",
        "bitrate_control": control,
        "encoder_sample_rate": OPUS_SAMPLE_RATE,
        "resampling": (f"torchaudio {torchaudio.__version__} functional.resample (sinc, defaults) "
                       f"{sample_rate or 'input rate'} -> 48000 Hz before and back after"),
        "alignment": "encoder pre-skip removed by the decoder; output cut/padded to the input length",
        "unit": "bits/s",
        "bits": ("8 * whole Ogg file bytes (pages, OpusHead, padded OpusTags) / duration" if cost == "file"
                 else "8 * Opus packet bytes (no Ogg pages or header packets) / duration"),
        "cost": cost,
    }
    if bitrate is not None:
        out["target_bitrate"] = _check_bitrate(bitrate)
    if sample_rate is not None:
        out["sample_rate"] = int(sample_rate)
    return out
