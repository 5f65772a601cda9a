"""Tokens to an AR generator end to end: export real images / speech, `vtok ar fit`, `vtok ar sample`, resume."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import vtok
from vtok import assets
from vtok.ar.sample import load_generator, sample
from vtok.ar.shards import TokenShards

from conftest import assert_same_exported_weights, kill_after_first_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "ar"


@pytest.fixture(scope="module")
def image_tokens(tmp_path_factory):
    """One-D-Piece tiny (untrained) tokens of 48 crops of the sample photos, in two labelled folders."""
    from vtok.ar.export import export_tokens

    root = tmp_path_factory.mktemp("ar_images")
    torch.manual_seed(0)
    vtok.create("onedpiece-tiny").eval().save_pretrained(root / "tok")
    crops = assets.sample_crops(48, 96, seed=3)
    for i, x in enumerate(crops):
        folder = root / "images" / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        assets.save_image(x, folder / f"{i:03d}.png")
    export_tokens(str(root / "tok"), root / "images", root / "tokens", labels="from-folders", progress=False)
    return root


def ar_fit(recipe: Path, run_root: Path, shards: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vtok.cli", "ar", "fit", "--config", str(recipe),
            "--data.init_args.shards", str(shards), "--data.init_args.batch_size", "8",
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "20", "--trainer.log_every_n_steps", "5",
            "--trainer.enable_progress_bar", "false", "--trainer.callbacks.init_args.every_n_train_steps", "10", *extra]


def run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def val_bits(run_dir: Path) -> list[float]:
    with open(run_dir / "logs" / "version_0" / "metrics.csv") as f:
        return [float(r["val/bits_per_token"]) for r in csv.DictReader(f) if r.get("val/bits_per_token")]


@pytest.fixture(scope="module")
def image_runs(image_tokens, tmp_path_factory):
    """The class-conditional image recipe run whole, and killed after its first checkpoint then rerun."""
    root = tmp_path_factory.mktemp("ar_runs")
    cmd = ar_fit(RECIPES / "onedpiece-tiny-cpu.yaml", root, image_tokens / "tokens", 60,
                 "--model.init_args.class_conditional", "true")
    for name in ("whole", "killed"):
        (root / name).mkdir()
    run(cmd, root / "whole")
    kill_after_first_checkpoint(cmd, root / "killed", root / "killed" / "runs" / "ar-onedpiece-tiny-cpu")
    run(cmd, root / "killed")
    return root / "whole" / "runs" / "ar-onedpiece-tiny-cpu", root / "killed" / "runs" / "ar-onedpiece-tiny-cpu"


def test_image_gpt_learns_samples_and_decodes(image_tokens, image_runs, tmp_path):
    run_dir = image_runs[0]
    shards = TokenShards(image_tokens / "tokens")
    bits = val_bits(run_dir)
    print(f"val bits/token {bits}, unigram entropy of the tokens {shards.unigram_entropy_bits():.3f}")
    assert bits[-1] < shards.unigram_entropy_bits()  # an untrained tokenizer's tokens are very predictable
    gpt, fmt, record, tok = load_generator(run_dir / "export")
    assert gpt.config["num_classes"] == 2 and record["labels"]["names"] == ["even", "odd"]
    paths = sample(run_dir / "export", tmp_path / "samples", n=4, label=1, cfg=2.0, num_tokens=5, top_k=20, seed=1)
    grid = Image.open(paths[0])
    assert grid.size == (2 * (tok.image_size + 2), 2 * (tok.image_size + 2))
    with pytest.raises(ValueError, match="num_tokens: expected 1..16"):
        sample(run_dir / "export", tmp_path / "bad", n=1, num_tokens=17)
    other = tmp_path / "other"
    torch.manual_seed(1)
    vtok.create("onedpiece-tiny").save_pretrained(other)
    with pytest.raises(ValueError, match="does not match the one the GPT was trained on"):
        load_generator(run_dir / "export", tokenizer=str(other))


def test_killed_ar_run_resumes_to_the_same_weights(image_runs):
    assert_same_exported_weights(*image_runs)  # dropout and label dropout included: the RNG resumes too


def test_multi_codebook_audio_with_the_delay_pattern(tmp_path):
    from vtok.ar.export import export_tokens

    torch.manual_seed(0)
    codec = vtok.create("rvq-codec-tiny").eval()  # 4 codebooks of 64 codes, hop 16 at 16 kHz
    codec.save_pretrained(tmp_path / "codec")
    export_tokens(str(tmp_path / "codec"), assets.sample_speech_paths()[0].parent, tmp_path / "tokens",
                  audio_seconds=0.02, progress=False)  # 20-frame windows
    run(ar_fit(RECIPES / "wavtokenizer-tiny-cpu.yaml", tmp_path, tmp_path / "tokens", 30,
               "--model.init_args.block_size", "32"), tmp_path)
    export = tmp_path / "runs" / "ar-wavtokenizer-tiny-cpu" / "export"
    gpt, fmt, record, tok = load_generator(export)
    assert gpt.config["num_streams"] == 4 and fmt.parallel
    paths = sample(export, tmp_path / "samples", n=2, seconds=0.02, seed=0)
    wav, rate = assets.load_audio(paths[0])
    assert rate == 16000 and wav.shape == (1, 320)
