"""The `vtok` command line: every subcommand has --help; list, info, encode/decode, push, demo."""
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

import vtok
from vtok import assets
from vtok.cli import build_parser, main

SUBCOMMANDS = ["list", "info", "encode", "decode", "analyze", "eval", "export", "ar", "push", "demo"]


def test_every_subcommand_has_help():
    result = subprocess.run([sys.executable, "-m", "vtok.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout
    parser = build_parser()
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([name, "--help"])
        assert exit_.value.code == 0


def test_list(capsys):
    assert main(["list", "rvq-codec-*"]) == 0
    out = capsys.readouterr().out
    assert "rvq-codec-24k" in out and "vqgan" not in out


def test_info(capsys):
    assert main(["info", "rvq-codec-24k"]) == 0
    out = capsys.readouterr().out
    assert "tokens_per_second  75.00" in out and "bits_per_second    6,000.00" in out and "parameters" in out


def test_info_of_a_paper_scale_model_shows_the_official_size(capsys):
    assert main(["info", "titok-l-32"]) == 0  # built on the meta device: no 2.5 GB allocation
    out = capsys.readouterr().out
    assert "parameters         641,054,735" in out and "num_tokens         32" in out
    assert "official           yucornetto/tokenizer_titok_l32_imagenet" in out


def test_errors_are_one_line_and_exit_2(capsys):
    assert main(["info", "not-a-model"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vqgan-tiny", "rvq-codec-tiny"])
def test_encode_decode_round_trip(name, tmp_path, capsys):
    torch.manual_seed(0)
    tok = vtok.create(name).eval()
    tok.save_pretrained(tmp_path / "tok")
    inputs = assets.sample_image_paths()[:2] if tok.modality == "image" else assets.sample_speech_paths()[:2]
    ids_file = tmp_path / "ids.safetensors"
    assert main(["encode", *map(str, inputs), "-t", str(tmp_path / "tok"), "-o", str(ids_file)]) == 0
    with safe_open(str(ids_file), "pt") as f:
        assert f.metadata()["modality"] == tok.modality
        first = f.get_tensor("ids.0")
    assert first.dtype == torch.long
    assert main(["decode", str(ids_file), "-o", str(tmp_path / "out")]) == 0
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.stem for p in outputs] == sorted(p.stem for p in inputs)
    if tok.modality == "image":
        x = assets.load_image(outputs[0])
        assert x.shape == (3, tok.image_size, tok.image_size)
        expected = tok.decode(first)[0]
        assert (x - expected).abs().max() <= 1 / 255 + 1e-6  # PNG stores 8 bits
    else:
        wav, sr = assets.load_audio(outputs[0])
        original, _ = assets.load_audio(inputs[0], sample_rate=tok.sample_rate)
        assert sr == tok.sample_rate and wav.shape == original.shape


def test_encode_num_codebooks(tmp_path):
    tok = vtok.create("rvq-codec-tiny").eval()
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "ids.safetensors"
    clip = str(assets.sample_speech_paths()[0])
    assert main(["encode", clip, "-t", str(tmp_path / "tok"), "-o", str(out), "--num-codebooks", "2"]) == 0
    with safe_open(str(out), "pt") as f:
        assert f.get_tensor("ids.0").shape[1] == 2


def test_analyze(tmp_path, capsys):
    tok = vtok.create("vqgan-tiny").eval()
    tok.save_pretrained(tmp_path / "tok")
    ids_file = tmp_path / "ids.safetensors"
    assert main(["encode", *map(str, assets.sample_image_paths()), "-t", str(tmp_path / "tok"), "-o", str(ids_file)]) == 0
    assert main(["analyze", str(ids_file), "--json", str(tmp_path / "stats.json"), "--plot", str(tmp_path / "stats.png")]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "per_position_entropy_bits" in out
    import json

    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["items"] == len(assets.sample_image_paths()) and len(stats["per_position_entropy_bits"]) == tok.num_tokens

    from PIL import Image

    assert Image.open(tmp_path / "stats.png").size == (1000, 400)


def test_encode_decode_positional_output_files(tmp_path):
    """`vtok encode speech.wav ids.safetensors && vtok decode ids.safetensors out.wav`, as a user types it."""
    tok = vtok.create("rvq-codec-tiny").eval()
    tok.save_pretrained(tmp_path / "tok")
    clip = assets.sample_speech_paths()[0]
    ids_file, wav_file = tmp_path / "ids.safetensors", tmp_path / "sub" / "out.wav"
    assert main(["encode", str(clip), str(ids_file), "-t", str(tmp_path / "tok")]) == 0
    assert main(["decode", str(ids_file), str(wav_file)]) == 0
    wav, sr = assets.load_audio(wav_file)
    original, _ = assets.load_audio(clip, sample_rate=tok.sample_rate)
    assert sr == tok.sample_rate and wav.shape == original.shape
    two = tmp_path / "two.safetensors"
    assert main(["encode", str(clip), str(clip), str(two), "-t", str(tmp_path / "tok")]) == 0
    with pytest.raises(SystemExit, match="holds 2 items"):
        main(["decode", str(two), str(tmp_path / "one.wav")])
    with pytest.raises(SystemExit, match="ending in .safetensors"):
        main(["encode", str(clip), "-t", str(tmp_path / "tok")])


def test_encode_without_a_tokenizer_uses_a_shipped_one_or_says_to_pass_one(tmp_path, monkeypatch):
    import vtok.hub

    monkeypatch.setattr(vtok.hub, "shipped_checkpoint", lambda name: None)
    clip = str(assets.sample_speech_paths()[0])
    with pytest.raises(SystemExit, match="no audio tokenizer ships with this install: pass --tokenizer"):
        main(["encode", clip, str(tmp_path / "ids.safetensors")])
