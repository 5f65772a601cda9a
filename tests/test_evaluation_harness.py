"""`vtok eval`: tokenizers and classic codecs on the shipped images and speech -> results.json/.md and rd.png."""
import json

import pytest
import torch
from PIL import Image

import vtok
from vtok import assets
from vtok.cli import main
from vtok.assets import list_data
from vtok.evaluation.harness import SCHEMA, evaluate

IMAGES = assets.sample_image_paths()[0].parent
SPEECH = assets.sample_speech_paths()[0].parent


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Untrained tiny tokenizers saved as directories (what `vtok eval` loads)."""
    root = tmp_path_factory.mktemp("toks")
    torch.manual_seed(0)
    for name in ("onedpiece-tiny", "rvq-codec-tiny"):
        vtok.create(name).eval().save_pretrained(root / name)
    return root


def test_image_eval_writes_results_and_an_rd_plot(saved, tmp_path):
    with pytest.warns(UserWarning, match="below the lowest rate"):  # 16-64 bits: no JPEG/WebP gets that low
        result = evaluate(IMAGES, tokenizers=[str(saved / "onedpiece-tiny")], codecs=["jpeg", "webp"], out=tmp_path,
                          num_tokens=[2, 8], rd=True, batch_size=4, rfid=False)  # rFID: the test below
    saved_json = json.loads((tmp_path / "results.json").read_text())
    assert saved_json["schema"] == SCHEMA and saved_json["runs"] == result["runs"]
    assert result["data"]["items"] == len(assets.sample_image_paths()) and result["data"]["image_size"] == 32
    toks = [r for r in result["runs"] if r["kind"] == "tokenizer"]
    assert [r["setting"]["num_tokens"] for r in toks] == [2, 8]
    assert [r["bits"] for r in toks] == [2 * 8.0, 8 * 8.0]  # tokens x log2(256)
    assert all(set(r["metrics"]) == {"psnr", "ssim"} for r in result["runs"])
    assert all(0 <= r["token_stats"]["usage"] <= 1 for r in toks)
    for codec in ("jpeg", "webp"):
        runs = [r for r in result["runs"] if r["name"] == codec]
        assert len(runs) >= 2 and all(r["bits"] > 0 for r in runs)
        qualities = [r["setting"]["quality"] for r in runs]
        assert qualities == sorted(qualities)
        assert runs[-1]["metrics"]["psnr"] >= runs[0]["metrics"]["psnr"]  # more bits, less distortion
        assert result["protocol"]["codecs"][codec]["cost"] == "payload"
    md = (tmp_path / "results.md").read_text()
    assert "| onedpiece-tiny | tokens 2 | 16 |" in md and "## Protocol" in md and "psnr" in md
    assert Image.open(result["rd_plot"]).size[0] >= 1000  # one panel per metric


def test_rfid_reference_is_computed_once_saved_and_reused(saved, tmp_path):
    result = evaluate(IMAGES, tokenizers=[str(saved / "onedpiece-tiny")], out=tmp_path, limit=4)
    run, = result["runs"]
    assert run["metrics"]["rfid"] > 0
    protocol = result["protocol"]["metrics"]["rfid"]
    assert protocol["reference"] == {"source": str(tmp_path / "rfid_reference.safetensors"), "num_images": 4}
    again = evaluate(IMAGES, tokenizers=[str(saved / "onedpiece-tiny")], out=tmp_path / "again", limit=4,
                     rfid_reference=protocol["reference"]["source"])
    assert again["runs"][0]["metrics"]["rfid"] == pytest.approx(run["metrics"]["rfid"], rel=1e-6)


def test_audio_eval_with_opus(saved, tmp_path):
    result = evaluate(SPEECH, tokenizers=[str(saved / "rvq-codec-tiny")], codecs=["opus"], out=tmp_path,
                      num_codebooks=[1, 4], metrics=["pesq", "stoi", "mel", "si_sdr"], limit=2, rd=True)
    toks = [r for r in result["runs"] if r["kind"] == "tokenizer"]
    tok = vtok.load(saved / "rvq-codec-tiny")
    assert [r["bits"] for r in toks] == [q * tok.tokens_per_second * 6.0 for q in (1, 4)]  # frames/s x log2(64) per level
    assert toks[-1]["bits"] == tok.bits_per_second  # all 4 levels: the codec's full rate
    assert result["data"]["sample_rate"] == 16000 and result["data"]["items"] == 2
    opus = [r for r in result["runs"] if r["name"] == "opus"]
    assert len(opus) >= 2 and all(r["unit"] == "bits/s" for r in opus)
    assert opus[-1]["metrics"]["pesq"] > toks[0]["metrics"]["pesq"]  # Opus beats an untrained codec
    assert set(result["protocol"]["metrics"]) >= {"pesq", "stoi", "mel_distance", "si_sdr"}
    assert (tmp_path / "rd.png").is_file()


def test_codec_alone_needs_a_budget(tmp_path):
    with pytest.raises(ValueError, match="needs --bits"):
        evaluate(IMAGES, codecs=["webp"], out=tmp_path, rfid=False)
    result = evaluate(IMAGES, codecs=["webp"], out=tmp_path, rfid=False, bits=4000, image_size=64, limit=3)
    assert {r["name"] for r in result["runs"]} == {"webp"} and result["data"]["image_size"] == 64


def test_bad_requests_are_value_errors(saved, tmp_path):
    with pytest.raises(ValueError, match="at least one --tokenizer or --codec"):
        evaluate(IMAGES, out=tmp_path)
    with pytest.raises(ValueError, match="an audio tokenizer, but --data holds image"):
        evaluate(IMAGES, tokenizers=[str(saved / "rvq-codec-tiny")], out=tmp_path)
    with pytest.raises(ValueError, match="not a classic image codec"):
        evaluate(IMAGES, codecs=["opus"], out=tmp_path, bits=100)
    with pytest.raises(ValueError, match="does not exist"):
        list_data(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="expected images"):
        list_data(tmp_path / "empty")


def test_cli_eval(saved, tmp_path, capsys):
    argv = ["eval", "--data", str(IMAGES), "--tokenizer", str(saved / "onedpiece-tiny"), "--num-tokens", "4",
            "--no-rfid", "--limit", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| onedpiece-tiny | tokens 4 | 32 |" in out and (tmp_path / "results.json").is_file()


def test_limit_spreads_items_over_the_sorted_list():
    from vtok.evaluation.harness import spread

    files = [f"f{i:02d}" for i in range(10)]
    assert spread(files, 5) == ["f00", "f02", "f04", "f06", "f08"]
    assert spread(files, None) == files and spread(files, 20) == files
    with pytest.raises(ValueError, match="--limit"):
        spread(files, 0)
