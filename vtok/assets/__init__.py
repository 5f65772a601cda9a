"""Sample photos and speech shipped with vtok, and the package's image/audio file I/O."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image, ImageOps

ASSETS_DIR: Path = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}  # what vtok reads as images
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}  # what vtok reads as audio (soundfile)


def sample_image_paths() -> list[Path]:
    """The shipped sample photos (256x256 PNG), sorted by name."""
    return sorted((ASSETS_DIR / "images").glob("*.png"))


def sample_speech_paths() -> list[Path]:
    """The shipped speech clips (mono 24 kHz 16-bit WAV), sorted by name."""
    return sorted((ASSETS_DIR / "speech").glob("*.wav"))


def list_data(root: str | Path) -> tuple[str, list[Path]]:
    """(modality, files) of a folder holding images or audio (searched recursively), or of one file."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else None
    if files is None:
        raise ValueError(f"--data: expected a folder or file of images or audio, got {root} (does not exist)")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    if bool(images) == bool(audio):
        raise ValueError(f"--data: expected images ({', '.join(sorted(IMAGE_SUFFIXES))}) or audio "
                         f"({', '.join(sorted(AUDIO_SUFFIXES))}) below {root}, got {len(images)} images and {len(audio)} audio files")
    return ("image", images) if images else ("audio", audio)


def _check_positive(name: str, value: int | None) -> None:
    """Raise ValueError unless value is None or a positive int."""
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _center_square(image: Image.Image, size: int) -> Image.Image:
    """Crop the largest centred square and resize it to size x size (bicubic, antialiased)."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC)


def load_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Read an image as float (3, H, W) RGB in [0, 1]; with size, centre-crop and resize to size x size."""
    _check_positive("size", size)
    with Image.open(path) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    if size is not None:
        image = _center_square(image, size)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).contiguous().float() / 255.0


def sample_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n seeded random size x size crops of the sample photos: float (n, 3, size, size) in [0, 1]."""
    photos = torch.stack([load_image(p) for p in sample_image_paths()])
    if size > photos.shape[-1]:
        raise ValueError(f"sample_crops: size must be at most {photos.shape[-1]}, got {size}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(len(photos), (1,), generator=g))
        top, left = torch.randint(0, photos.shape[-1] - size + 1, (2,), generator=g).tolist()
        out.append(photos[k, :, top : top + size, left : left + size])
    return torch.stack(out)


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read audio as mono float (1, T) in [-1, 1] and its rate; resample to sample_rate if given."""
    _check_positive("sample_rate", sample_rate)
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.mean(axis=1))[None]
    if sample_rate is not None and sample_rate != rate:
        import torchaudio.functional as AF

        wav, rate = AF.resample(wav, rate, sample_rate), sample_rate
    return wav.clamp(-1.0, 1.0), rate


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Write a float (3, H, W) tensor in [0, 1] as an 8-bit RGB image (format from the suffix)."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"save_image expects a tensor of shape (3, H, W), got {tuple(x.shape)}")
    pixels = (x.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path)


def save_audio(wav: torch.Tensor, sample_rate: int, path: str | Path) -> None:
    """Write a mono (1, T) or (T,) waveform as 16-bit PCM WAV, clamped to [-1, 1]."""
    if not (wav.ndim == 1 or (wav.ndim == 2 and wav.shape[0] == 1)):
        raise ValueError(f"save_audio expects a mono waveform of shape (1, T) or (T,), got {tuple(wav.shape)}")
    _check_positive("sample_rate", sample_rate)
    samples = wav.detach().float().cpu().reshape(-1).clamp(-1.0, 1.0).numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")
