"""Build image/speech data sets and vtok's sample assets from Debian packages and PyPI wheels.

    python eval/prepare_offline_data.py images --out DIR [--size 128] [--crops-per-image 32] [--seed 0]
    python eval/prepare_offline_data.py speech --out DIR [--sample-rate 24000] [--seconds-per-clip 0]
    python eval/prepare_offline_data.py assets --out vtok/assets

Debian packages are fetched with `apt-get download` and unpacked with `dpkg -x`, wheels with
`pip download`; both are cached under --cache (default ~/.cache/vtok) and reused. The test
split is held out by source photo (images) and by speaker (speech); every output directory
gets a manifest.json (source file, its sha256, package, version, license, split) and a
SHA256SUMS of what was written. A few hundred crops give a smoke-level rFID, not one
comparable with ImageNet-50k numbers.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from PIL import Image, ImageOps

DEFAULT_CACHE = Path.home() / ".cache" / "vtok"
# pip downloads the same wheel file whatever machine this runs on.
WHEEL_TAGS = ("--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
              "--python-version", "3.12", "--implementation", "cp")
SKIMAGE, SKLEARN, MATPLOTLIB = "pypi:scikit-image==0.26.0", "pypi:scikit-learn==1.9.1", "pypi:matplotlib==3.11.2"
PEAK = 0.95
MIN_UTTERANCE_S = 0.1  # shorter (e.g. empty) files are skipped
ASSET_IMAGE_SIZE, ASSET_SAMPLE_RATE, ASSET_GAP_S = 256, 24000, 0.2


@dataclass(frozen=True)
class Source:
    """Files matching glob patterns inside one Debian package or a 'pypi:NAME==VERSION' wheel."""

    package: str
    patterns: tuple[str, ...]
    license: str  # used where the package's DEP-5 copyright file names no license for the file
    exclude: tuple[str, ...] = ()
    speaker: Callable[[Path], str] | None = None  # speech: speaker label from the path inside the package


@dataclass(frozen=True)
class SourceFile:
    """One file taken from a package, with its provenance."""

    file: Path  # where it lies on this machine
    package: str
    version: str
    path: str  # path inside the package
    license: str
    sha256: str
    name: str  # short unique name for outputs
    speaker: str = ""
    text: str = ""

    @property
    def id(self) -> str:
        """'<package>/<path inside the package>'."""
        return f"{self.package}/{self.path}"

    def record(self, split: str, **extra: object) -> dict:
        """Manifest entry for this file."""
        entry = {"id": self.id, "package": self.package, "version": self.version, "path": self.path,
                 "license": self.license, "sha256": self.sha256, "split": split, **extra}
        return entry | ({"speaker": self.speaker} if self.speaker else {}) | ({"text": self.text} if self.text else {})


def fillets_speaker(rel: Path) -> str:
    """Fish Fillets voice: the small fish ('m') or big fish ('v') named in the file name, else 'other'."""
    tokens = re.split(r"[-_]", rel.stem)
    role = "small-fish" if "m" in tokens else "big-fish" if "v" in tokens else "other"
    return f"fillets-{rel.parts[-2]}:{role}"


OPENCV_PHOTOS = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                 "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg",
                 "leuvenA.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg")
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "retina.jpg", "rocket.jpg")
IMAGE_SOURCES = (
    Source("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",), "GPL-2+"),
    Source("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*.jpg",), "CC-BY-4.0 or CC-BY-SA-4.0 (per file)",
           exclude=("*/analogpattern_*", "*/umang_*")),  # a texture and a gradient, not photos
    Source("plasma-workspace-wallpapers", ("usr/share/wallpapers/*/contents/images/2560x1600.jpg",),
           "LGPL-3 (per wallpaper metadata.json)", exclude=("*/Autumn/*",)),  # a painting
    Source("palapeli-data", ("usr/share/palapeli/collection/*.jpg",), "public domain or GFDL (per puzzle .desktop)"),
    Source("opencv-doc", tuple(f"usr/share/doc/opencv-doc/examples/data/{n}" for n in OPENCV_PHOTOS),
           "Apache-2.0 AND BSD-3-Clause (debian/copyright); provenance of sample images mixed"),
    Source(SKIMAGE, tuple(f"skimage/data/{n}" for n in SKIMAGE_PHOTOS), "CC0 or public domain (skimage.data docs)"),
    Source(SKLEARN, ("sklearn/datasets/images/*.jpg",), "CC-BY-2.0 (sklearn/datasets/images/README.txt)"),
    Source(MATPLOTLIB, ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",), "public domain (U.S. Navy photograph)"),
)
FILLETS_SOUND = "usr/share/games/fillets-ng/sound"
SPEECH_SOURCES = (
    Source("asterisk-core-sounds-en-wav", ("usr/share/asterisk/sounds/en_US_f_Allison/**/*.wav",),
           "CC-BY-SA-3.0 (recorded by Allison Smith)",
           exclude=("*/silence/*", "*/beep.wav", "*/beeperr.wav", "*/ascending-2tone.wav", "*/descending-2tone.wav"),
           speaker=lambda rel: "asterisk-en:allison"),
    Source("klettres-data", ("usr/share/klettres/*/*/*.ogg",), "GPL-2+",
           speaker=lambda rel: f"klettres:{rel.parts[3]}"),  # one speaker per language
    Source("fillets-ng-data", (f"{FILLETS_SOUND}/elk/en/*.ogg", f"{FILLETS_SOUND}/warcraft/en/*.ogg"), "GPL-2",
           speaker=fillets_speaker),  # the rest of its en/ folders are sound effects
    Source("fillets-ng-data-cs", (f"{FILLETS_SOUND}/*/cs/*.ogg",), "GPL-2", speaker=fillets_speaker),
    Source("fillets-ng-data-nl", (f"{FILLETS_SOUND}/*/nl/*.ogg",), "GPL-2", speaker=fillets_speaker),
    Source("alsa-utils", ("usr/share/sounds/alsa/*.wav",), "GPL-2", exclude=("*/Noise.wav",),
           speaker=lambda rel: "alsa"),
)
# Held out with the speakers of the shipped assets: one real voice, one synthetic voice (accent and variant).
TEST_SPEAKERS = ("fillets-nl:small-fish", "espeak:en-gb-scotland+f3")
ESPEAK_VOICES = ("en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f4", "en-029+m7", "en-gb-x-rp+f1", "en-gb-scotland+f3")
HARVARD_SENTENCES = (  # lists 1-5 of the IEEE 1969 Harvard sentences
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.", "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.", "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.", "What joy there is in living.",
    "A king ruled the state in the early days.", "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.", "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.", "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.", "Hop over the fence and plunge in.",
    "The friendly gang left the drug den.", "Mesh wire keeps chicks inside.",
)


@dataclass(frozen=True)
class AssetImage:
    """A shipped sample photo: output name, source wheel or package, path inside it, license."""

    name: str
    package: str
    path: str
    license: str


@dataclass(frozen=True)
class AssetClip:
    """A shipped speech clip: utterances of one speaker joined with short pauses."""

    name: str
    package: str
    paths: tuple[str, ...]
    license: str
    speaker: str


ASSET_IMAGES = (
    AssetImage("astronaut.png", SKIMAGE, "skimage/data/astronaut.png",
               "Public domain (NASA photo of Eileen Collins; 'no known copyright restrictions')"),
    AssetImage("chelsea.png", SKIMAGE, "skimage/data/chelsea.png", "CC0 (photo by Stefan van der Walt)"),
    AssetImage("coffee.png", SKIMAGE, "skimage/data/coffee.png", "CC0 (photo by Rachel Michetti)"),
    AssetImage("grace_hopper.png", MATPLOTLIB, "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
               "Public domain (official U.S. Navy photograph of Grace Hopper)"),
    AssetImage("hubble_deep_field.png", SKIMAGE, "skimage/data/hubble_deep_field.jpg",
               "Public domain (NASA/ESA Hubble eXtreme Deep Field)"),
    AssetImage("rocket.png", SKIMAGE, "skimage/data/rocket.jpg", "Public domain (SpaceX launch photo of DSCOVR)"),
)
ASSET_CLIPS = (
    AssetClip("alsa_front.wav", "alsa-utils",
              tuple(f"usr/share/sounds/alsa/Front_{s}.wav" for s in ("Left", "Center", "Right")),
              "GPL-2 (alsa-utils, debian/copyright 'Files: *')", "alsa"),
    AssetClip("klettres_de_words.wav", "klettres-data",
              tuple(f"usr/share/klettres/de/syllab/{w}.ogg" for w in ("affe", "haus", "hund", "kind", "nase")),
              "GPL-2+ (klettres-data, debian/copyright 'Files: *')", "klettres:de"),
    AssetClip("klettres_en_gb_words.wav", "klettres-data",
              tuple(f"usr/share/klettres/en_GB/syllab/{w}.ogg" for w in ("ball", "fix", "hot", "sit")),
              "GPL-2+ (klettres-data, debian/copyright 'Files: *')", "klettres:en_GB"),
)


# ---------------------------------------------------------------- fetching packages


def run_tool(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    """Run cmd and return its stdout; exit with a message naming `what` if the tool is missing or fails."""
    if shutil.which(cmd[0]) is None:
        raise SystemExit(f"{what}: `{cmd[0]}` not found; this step needs a Debian/Ubuntu machine with apt and dpkg")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what}: `{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{proc.stderr.strip()}")
    return proc.stdout


def debian_package(name: str, cache: Path) -> tuple[Path, str]:
    """Download (apt-get download) and unpack (dpkg -x) a Debian package once; return (root, version)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{name}_*.deb")):
        run_tool(["apt-get", "download", name], f"Debian package {name} (is a Debian mirror reachable? "
                 "run `apt-get update` once first)", cwd=debs)
    deb = sorted(debs.glob(f"{name}_*.deb"))[-1]
    root = debs / name
    if not (root / ".unpacked").exists():
        shutil.rmtree(root, ignore_errors=True)
        run_tool(["dpkg", "-x", str(deb), str(root)], f"unpacking {deb.name}")
        (root / ".unpacked").touch()
    return root, run_tool(["dpkg-deb", "-f", str(deb), "Version"], f"reading {deb.name}").strip()


def python_wheel(spec: str, cache: Path) -> tuple[Path, str]:
    """Download (pip download) and unzip the wheel of NAME==VERSION once; return (root, version)."""
    name, version = spec.split("==")
    wheels = cache / "wheels"
    root = wheels / f"{name}-{version}"
    if not (root / ".unpacked").exists():
        wheels.mkdir(parents=True, exist_ok=True)
        pattern = f"{name.replace('-', '_')}-{version}-*.whl"
        if not list(wheels.glob(pattern)):
            run_tool([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *WHEEL_TAGS,
                      "--dest", str(wheels), spec], f"PyPI wheel {spec} (is PyPI reachable?)")
        with zipfile.ZipFile(sorted(wheels.glob(pattern))[-1]) as wheel:
            wheel.extractall(root)
        (root / ".unpacked").touch()
    return root, version


def package_root(package: str, cache: Path) -> tuple[Path, str]:
    """(unpacked root, version) of a Debian package name or a 'pypi:NAME==VERSION' wheel."""
    if package.startswith("pypi:"):
        return python_wheel(package.removeprefix("pypi:"), cache)
    return debian_package(package, cache)


def package_name(package: str) -> str:
    """'pypi:NAME==VERSION' -> NAME; a Debian name stays as it is."""
    return package.removeprefix("pypi:").split("==")[0]


def dep5_licenses(root: Path) -> dict[str, str]:
    """File basename -> License, for files a Debian DEP-5 copyright file names without wildcards."""
    licenses = {}
    for copyright_file in root.glob("usr/share/doc/*/copyright"):
        for paragraph in re.split(r"\n\s*\n", copyright_file.read_text(errors="replace")):
            files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.M)
            license_ = re.search(r"^License:[ \t]*(\S.*)$", paragraph, re.M)
            if files and license_:
                for pattern in files.group(1).split():
                    if not any(c in pattern for c in "*?["):
                        licenses[Path(pattern).name] = license_.group(1).strip()
    return licenses


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def slug(text: str) -> str:
    """File-name-safe form of text."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")


def gather(sources: tuple[Source, ...], cache: Path) -> list[SourceFile]:
    """Fetch each source's package and list its matching files (byte-identical duplicates dropped), sorted by id."""
    files, seen = [], set()
    for source in sources:
        root, version = package_root(source.package, cache)
        licenses, package = dep5_licenses(root), package_name(source.package)
        paths = sorted({p.relative_to(root) for pattern in source.patterns for p in root.glob(pattern) if p.is_file()})
        paths = [p for p in paths if not any(fnmatch(p.as_posix(), ex) for ex in source.exclude)]
        if not paths:
            raise SystemExit(f"{source.package} {version}: no file matches {source.patterns}")
        common = Path(os.path.commonpath([p.parent for p in paths]))
        for rel in paths:
            digest = sha256_file(root / rel)
            if digest in seen:
                continue
            seen.add(digest)
            files.append(SourceFile(
                file=root / rel, package=package, version=version, path=rel.as_posix(),
                license=licenses.get(rel.name, source.license), sha256=digest,
                name=f"{package}_{slug(rel.relative_to(common).with_suffix('').as_posix())}",
                speaker=source.speaker(rel) if source.speaker else ""))
    return sorted(files, key=lambda f: f.id)


def write_sums(out: Path, files: list[Path], name: str = "SHA256SUMS") -> None:
    """Write out/name in sha256sum format for files, with paths relative to out."""
    lines = [f"{sha256_file(p)}  {p.relative_to(out).as_posix()}" for p in sorted(files)]
    (out / name).write_text("\n".join(lines) + "\n")


def fresh_dirs(out: Path, names: tuple[str, ...]) -> None:
    """(Re)create empty out/<name> folders."""
    for name in names:
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir(parents=True)


def total_size(files: list[Path]) -> str:
    """Total size of files, in MB."""
    return f"{sum(p.stat().st_size for p in files) / 1e6:.1f} MB"


# ---------------------------------------------------------------- images


def open_rgb(path: Path) -> Image.Image:
    """An image file as upright RGB."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def random_box(width: int, height: int, size: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A random square (left, top, right, bottom) whose side is log-uniform in [max(size, short/4), short]."""
    short = min(width, height)
    low = min(short, max(size, short // 4))
    side = round(math.exp(rng.uniform(math.log(low), math.log(short))))
    left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    return left, top, left + side, top + side


def image_split(index: int, photo: SourceFile, held_out: set[str]) -> str:
    """'test' for every 10th photo by id and for the sources of the shipped assets, else 'train'."""
    return "test" if index % 10 == 9 or photo.id in held_out else "train"


def build_images(out: Path, cache: Path, size: int, crops_per_image: int, seed: int) -> None:
    """Random square crops of every source photo, resized to size x size PNGs, split by source photo."""
    photos = gather(IMAGE_SOURCES, cache)
    held_out = {f"{package_name(a.package)}/{a.path}" for a in ASSET_IMAGES}
    fresh_dirs(out, ("train", "test"))
    sources, items, written = [], [], []
    for index, photo in enumerate(photos):
        split = image_split(index, photo, held_out)
        image = open_rgb(photo.file)
        sources.append(photo.record(split, width=image.width, height=image.height))
        rng = random.Random(f"{seed}:{photo.id}")
        for k in range(crops_per_image):
            box = random_box(image.width, image.height, size, rng)
            target = out / split / f"{photo.name}_{k:03d}.png"
            image.crop(box).resize((size, size), Image.Resampling.BICUBIC).save(target)
            items.append({"file": target.relative_to(out).as_posix(), "source": photo.id, "box": list(box)})
            written.append(target)
    manifest = {"kind": "images", "size": size, "crops_per_image": crops_per_image, "seed": seed,
                "sources": sources, "items": items}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_sums(out, written + [out / "manifest.json"])
    for split in ("train", "test"):
        n = sum(s["split"] == split for s in sources)
        crops = [p for p in written if p.relative_to(out).parts[0] == split]
        print(f"{split:5s}: {n} source photos, {len(crops)} crops of {size}x{size}, {total_size(crops)}")


# ---------------------------------------------------------------- speech


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """An audio file as a float32 mono array and its sample rate."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


def trim_silence(wav: np.ndarray, rate: int, threshold_db: float = -40.0, pad_s: float = 0.1) -> np.ndarray:
    """Cut leading/trailing 10 ms frames quieter than threshold_db below the loudest one, keeping pad_s."""
    hop = max(1, rate // 100)
    frames = len(wav) // hop
    if frames == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db)
    pad = int(pad_s * rate)
    return wav[max(0, loud[0] * hop - pad): min(len(wav), (loud[-1] + 1) * hop + pad)]


def resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample a mono array with torchaudio's windowed-sinc filter."""
    if rate == target:
        return wav
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wav))[None], rate, target)[0].numpy()


def peak_normalise(wav: np.ndarray) -> np.ndarray:
    """Scale so that the largest magnitude is one 16-bit step under PEAK (it stays <= PEAK once written)."""
    return wav * ((PEAK - 2.0**-15) / max(float(np.abs(wav).max()), 1e-9))


def prepared_utterance(path: Path, target: int) -> tuple[np.ndarray, int]:
    """An utterance file as mono, silence-trimmed, resampled to target, peak-normalised; plus its original rate."""
    wav, rate = read_mono(path)
    if len(wav) < MIN_UTTERANCE_S * rate:
        return np.zeros(0, dtype=np.float32), rate
    return peak_normalise(resample(trim_silence(wav, rate), rate, target)), rate


def ensure_espeak() -> str:
    """The installed espeak-ng's version, installing it with apt-get if it is missing."""
    if shutil.which("espeak-ng") is None:
        run_tool(["apt-get", "install", "-y", "espeak-ng"], "installing espeak-ng (needs root and a Debian mirror)")
    banner = run_tool(["espeak-ng", "--version"], "espeak-ng --version")
    return re.search(r"text-to-speech:\s*(\S+)", banner).group(1)


def espeak_files(cache: Path) -> list[SourceFile]:
    """Every Harvard sentence spoken by every espeak-ng voice (synthesised once into the cache)."""
    version = ensure_espeak()
    files = []
    for voice in ESPEAK_VOICES:
        for i, text in enumerate(HARVARD_SENTENCES):
            path = cache / "espeak" / version / voice / f"s{i:02d}.wav"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                run_tool(["espeak-ng", "-v", voice, "-w", str(path), text], f"espeak-ng voice {voice}")
            files.append(SourceFile(
                file=path, package="espeak-ng", version=version, path=f"{voice}/s{i:02d}",
                license="synthetic speech (espeak-ng); text: Harvard sentences, public domain",
                sha256=sha256_file(path), name=f"espeak-ng_s{i:02d}", speaker=f"espeak:{voice}", text=text))
    return files


def clip_starts(length: int, clip: int) -> list[int]:
    """Start samples of consecutive clip-long pieces (the whole utterance when clip is 0; a short tail is dropped)."""
    return [0] if clip == 0 else list(range(0, length - clip + 1, clip))


def build_speech(out: Path, cache: Path, sample_rate: int, seconds_per_clip: float) -> None:
    """Recorded and synthetic speech as mono 16-bit WAVs at sample_rate, split by speaker."""
    utterances = gather(SPEECH_SOURCES, cache) + espeak_files(cache)
    fresh_dirs(out, ("train", "test"))
    clip = round(seconds_per_clip * sample_rate)
    held_out = set(TEST_SPEAKERS) | {c.speaker for c in ASSET_CLIPS}
    sources, items, written, skipped = [], [], [], []
    for utt in utterances:
        split = "test" if utt.speaker in held_out else "train"
        wav, rate = prepared_utterance(utt.file, sample_rate)
        if len(wav) == 0:
            skipped.append(utt.id)
            continue
        sources.append(utt.record(split, sample_rate=rate, seconds=round(len(wav) / sample_rate, 3)))
        for k, start in enumerate(clip_starts(len(wav), clip)):
            piece = wav[start: start + clip] if clip else wav
            suffix = f"_{k:03d}" if clip else ""
            target = out / split / slug(utt.speaker) / f"{utt.name}{suffix}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(target), piece, sample_rate, subtype="PCM_16", format="WAV")
            items.append({"file": target.relative_to(out).as_posix(), "source": utt.id,
                          "start_s": round(start / sample_rate, 3), "seconds": round(len(piece) / sample_rate, 3)})
            written.append(target)
    manifest = {"kind": "speech", "sample_rate": sample_rate, "seconds_per_clip": seconds_per_clip,
                "test_speakers": sorted(held_out), "sources": sources, "items": items,
                "skipped_shorter_than_min": skipped}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_sums(out, written + [out / "manifest.json"])
    print_speech_summary(out, sources, items, written)
    print(f"skipped {len(skipped)} source files shorter than {MIN_UTTERANCE_S} s: {skipped}")


def print_speech_summary(out: Path, sources: list[dict], items: list[dict], written: list[Path]) -> None:
    """Files, speakers and minutes per split, and minutes per package."""
    for split in ("train", "test"):
        rows = [i for i in items if i["file"].startswith(split + "/")]
        speakers = {s["speaker"] for s in sources if s["split"] == split}
        minutes = sum(i["seconds"] for i in rows) / 60
        size = total_size([p for p in written if p.relative_to(out).parts[0] == split])
        print(f"{split:5s}: {len(rows)} files, {len(speakers)} speakers, {minutes:.1f} min, {size}")
    for package in sorted({s["package"] for s in sources}):
        chosen = [s for s in sources if s["package"] == package]
        minutes = sum(s["seconds"] for s in chosen) / 60
        print(f"  {package:28s} {len(chosen):5d} utterances {minutes:6.1f} min (before cutting into clips)")


# ---------------------------------------------------------------- assets


def asset_image(asset: AssetImage, root: Path, out: Path) -> None:
    """Centre-crop a source photo to a square, resize it to ASSET_IMAGE_SIZE and save it as PNG."""
    image = open_rgb(root / asset.path)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    square.resize((ASSET_IMAGE_SIZE, ASSET_IMAGE_SIZE), Image.Resampling.BICUBIC).save(out / asset.name)


def asset_clip(clip: AssetClip, root: Path, out: Path) -> float:
    """Join a speaker's trimmed utterances with short pauses at ASSET_SAMPLE_RATE; write it; return seconds."""
    gap = np.zeros(round(ASSET_GAP_S * ASSET_SAMPLE_RATE), dtype=np.float32)
    pieces = []
    for path in clip.paths:
        wav, rate = read_mono(root / path)
        pieces += [resample(trim_silence(wav, rate), rate, ASSET_SAMPLE_RATE), gap]
    wav = peak_normalise(np.concatenate(pieces[:-1]))
    seconds = len(wav) / ASSET_SAMPLE_RATE
    if not 2.0 <= seconds <= 5.0:
        raise SystemExit(f"{clip.name}: {seconds:.2f} s, expected a clip of 2-5 s; change its utterances")
    sf.write(str(out / clip.name), wav, ASSET_SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return seconds


def licenses_markdown(rows: list[tuple[str, str, str, str, str]]) -> str:
    """LICENSES.md: one table row (file, source, original path, license, processing) per asset."""
    head = ["# Licenses of the sample assets", "",
            "Regenerate with `python eval/prepare_offline_data.py assets --out vtok/assets`; "
            "`MANIFEST.sha256` lists the sha256 of every file here.", "",
            "The speech clips are GPL-licensed data (not code), taken from Debian packages whose "
            "sources Debian distributes; the photos are CC0 or public domain.", "",
            "| file | source package (version) | original path | license | processing |", "|---|---|---|---|---|"]
    return "\n".join(head + [f"| {' | '.join(row)} |" for row in rows]) + "\n"


def build_assets(out: Path, cache: Path) -> None:
    """Write the shipped sample photos, speech clips, LICENSES.md and MANIFEST.sha256 into out."""
    for folder, pattern in (("images", "*.png"), ("speech", "*.wav")):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for stale in (out / folder).glob(pattern):
            stale.unlink()
    rows = []
    for asset in ASSET_IMAGES:
        root, version = package_root(asset.package, cache)
        asset_image(asset, root, out / "images")
        rows.append((f"images/{asset.name}", f"{package_name(asset.package)} {version} (PyPI wheel)", asset.path,
                     asset.license, f"centre-cropped to a square, bicubic resize to {ASSET_IMAGE_SIZE}x"
                     f"{ASSET_IMAGE_SIZE}, PNG"))
    for clip in ASSET_CLIPS:
        root, version = package_root(clip.package, cache)
        seconds = asset_clip(clip, root, out / "speech")
        rows.append((f"speech/{clip.name}", f"{clip.package} {version} (Debian)", "<br>".join(clip.paths),
                     clip.license, f"mono, silence-trimmed, resampled to {ASSET_SAMPLE_RATE} Hz, joined with "
                     f"{ASSET_GAP_S} s pauses ({seconds:.2f} s), peak-normalised to {PEAK}, 16-bit PCM WAV"))
    (out / "LICENSES.md").write_text(licenses_markdown(rows))
    files = [*(out / "images").glob("*.png"), *(out / "speech").glob("*.wav"), out / "LICENSES.md"]
    write_sums(out, files, "MANIFEST.sha256")
    print(f"{len(ASSET_IMAGES)} images, {len(ASSET_CLIPS)} speech clips, {total_size(files)} in {out}")


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the sub-command and its options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="output folder")
    common.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where .deb files, unpacked packages, wheels and espeak output are kept")
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", parents=[common], help="random crops of photos, split by source photo")
    images.add_argument("--size", type=int, default=128, help="side of the square crops in pixels")
    images.add_argument("--crops-per-image", type=int, default=32)
    images.add_argument("--seed", type=int, default=0)
    speech = sub.add_parser("speech", parents=[common], help="recorded and synthetic speech, split by speaker")
    speech.add_argument("--sample-rate", type=int, default=24000)
    speech.add_argument("--seconds-per-clip", type=float, default=0.0,
                        help="cut utterances into clips of this length (tails and shorter ones dropped); 0: whole")
    sub.add_parser("assets", parents=[common], help="regenerate vtok/assets (images, speech, LICENSES.md, manifest)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run one sub-command and report how long it took."""
    args = parse_args(argv)
    start = time.perf_counter()
    if args.command == "images":
        build_images(args.out, args.cache, args.size, args.crops_per_image, args.seed)
    elif args.command == "speech":
        build_speech(args.out, args.cache, args.sample_rate, args.seconds_per_clip)
    else:
        build_assets(args.out, args.cache)
    print(f"{args.command}: done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
