"""`vtok demo` (the main job): shipped tokenizers on the held-out samples -> grid, WAVs, spectrograms, RD plots, table."""
import re

import pytest
from PIL import Image

import vtok
from vtok.cli import main
from vtok.demo import CELL, IMAGE_TOKENS, shipped_names


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out)]) == 0
    return out


def _rows(table: str, name: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith(f"| {name}")]


def test_demo_writes_every_output(demo):
    images, audio = shipped_names("image"), shipped_names("audio")
    assert images and audio
    grid = Image.open(demo / "grid.png")
    n_cols = 1 + sum(len(IMAGE_TOKENS) if vtok.load(n).variable_length else 1 for n in images) + 1  # + original, JPEG
    assert grid.size == (CELL * n_cols, 14 + CELL * len(vtok.assets.sample_image_paths()))
    assert (demo / "spectrograms.png").is_file() and (demo / "image" / "rd.png").is_file()
    wavs = {p.name for p in (demo / "speech").glob("*.wav")}
    for name in audio:
        assert (demo / f"audio-{name}" / "rd.png").is_file()
        assert {f"{p.stem}_{name}.wav" for p in vtok.assets.sample_speech_paths()} <= wavs
    table = (demo / "results.md").read_text()
    for name in images + audio:
        assert name in table


def test_shipped_image_tokenizer_improves_with_tokens(demo):
    """A trained variable-length tokenizer: more tokens, higher held-out PSNR (an untrained one is flat)."""
    table = (demo / "results.md").read_text()
    name = next(n for n in shipped_names("image") if vtok.load(n).variable_length)
    psnr = {int(re.search(r"\d+", r[1]).group()): float(r[3]) for r in _rows(table, name)}
    assert sorted(psnr) == [k for k in IMAGE_TOKENS if k <= vtok.load(name).num_tokens]
    assert psnr[max(psnr)] > psnr[1] + 1.0


def test_demo_without_shipped_checkpoints_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("VTOK_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ValueError, match=f"no shipped image checkpoint in {tmp_path}"):
        shipped_names("image")


def test_push_a_shipped_checkpoint_uploads_weights_config_and_card(monkeypatch):
    """`vtok push checkpoints/<name> org/<name>`, offline up to the upload call."""
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, **kw: calls.append(("create", kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or "url")
    name = shipped_names("image")[0]
    assert main(["push", str(vtok.hub.shipped_checkpoint(name)), f"org/{name}"]) == 0
    (_, create), (_, upload) = calls
    assert create["repo_id"] == upload["repo_id"] == f"org/{name}"
    files = {p.name for p in upload["folder_path"].iterdir()}
    assert {"config.json", "model.safetensors", "README.md"} <= files
    assert "Held-out metrics" in (upload["folder_path"] / "README.md").read_text()
