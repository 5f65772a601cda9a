"""Hub I/O: save -> load bit-exact, through an offline HF cache, strict, no pickles, clear errors."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

import vtok
from vtok.hub import HubUnavailableError, load_pretrained, push

from conftest import sample_input


def outputs(tok, x):
    with torch.no_grad():
        ids = tok.encode(x)
        return ids, tok.decode(ids)


def test_save_load_is_bit_exact(tiny, tmp_path):
    x = sample_input(tiny)
    tiny.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = vtok.load(tmp_path / "tok")
    assert type(loaded) is type(tiny) and loaded.config == tiny.config and not loaded.training
    ids, y = outputs(tiny, x)
    ids2, y2 = outputs(loaded, x)
    assert torch.equal(ids, ids2) and torch.equal(y, y2)
    assert type(tiny).from_pretrained(tmp_path / "tok").config == tiny.config


def test_config_json_and_card(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, model_card_kwargs={"name": "my-tiny", "metrics": {"PSNR": "12.3 dB"}, "recipe": "recipes/x.yaml"})
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["architecture"] == type(tiny).__name__
    assert record["config"] == tiny.config
    assert record["vtok"]["modality"] == tiny.modality and record["vtok"]["vocab_size"] == tiny.vocab_size
    card = (tmp_path / "README.md").read_text()
    assert "library_name: vtok" in card and "# my-tiny" in card
    assert "| PSNR | 12.3 dB |" in card and "recipes/x.yaml" in card
    assert f"| vocab (per codebook) | {tiny.vocab_size} |" in card
    tiny.save_pretrained(tmp_path)  # saving again writes a fresh card, not the stale one
    assert "12.3 dB" not in (tmp_path / "README.md").read_text()


def _fake_hf_cache(hf_home, repo_id, files_from):
    """Lay out `files_from`'s files as the Hugging Face cache holds a downloaded snapshot."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)


def _run_offline(code, hf_home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300)


def test_load_from_hf_cache_offline(tiny, tmp_path):
    x = sample_input(tiny)
    tiny.save_pretrained(tmp_path / "saved")
    _fake_hf_cache(tmp_path / "hf", "someorg/tiny-tok", tmp_path / "saved")
    ids, y = outputs(tiny, x)
    save_file({"x": x, "ids": ids, "y": y.contiguous()}, str(tmp_path / "expected.safetensors"))
    result = _run_offline(f"""
        import torch, vtok
        from safetensors.torch import load_file
        e = load_file({str(tmp_path / 'expected.safetensors')!r})
        tok = vtok.load("someorg/tiny-tok")
        with torch.no_grad():
            ids = tok.encode(e["x"])
            assert torch.equal(ids, e["ids"]) and torch.equal(tok.decode(ids), e["y"])
        print("OK", type(tok).__name__)
    """, tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert f"OK {type(tiny).__name__}" in result.stdout


def test_missing_hub_id_gives_one_clear_error(tmp_path):
    result = _run_offline("""
        import vtok
        try:
            vtok.load("nobody-here/no-such-tokenizer")
        except vtok.HubUnavailableError as err:
            print("ERR", err)
    """, tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    msg = result.stdout
    assert "ERR" in msg and "'nobody-here/no-such-tokenizer'" in msg
    assert "hf download nobody-here/no-such-tokenizer" in msg and "local directory" in msg
    with pytest.raises(HubUnavailableError, match="not in the local Hugging Face cache"):
        vtok.load("nobody-here/no-such-tokenizer", local_files_only=True, cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.ckpt", "weights.pt", "model.pth"])
def test_pickle_files_are_refused(tiny, tmp_path, monkeypatch, name):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("vtok called torch.load"))
    tiny.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / name)
    with pytest.raises(ValueError, match="never unpickles"):
        vtok.load(tmp_path)
    with pytest.raises(ValueError, match="never unpickles"):
        vtok.load(tmp_path / name)


def test_loading_is_strict(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    missing = dict(state)
    dropped = sorted(missing)[0]
    del missing[dropped]
    save_file(missing, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=f"missing keys.*{dropped}"):
        vtok.load(tmp_path)
    save_file({**state, "extra.weight": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected keys.*extra.weight"):
        vtok.load(tmp_path)


def test_config_must_be_json():
    with pytest.raises(ValueError, match="plain JSON"):
        vtok.create("vqgan-tiny", channel_mult=(1, 2, object()))


def test_wrong_class_and_unknown_architecture(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    other = next(c for c in vtok.registry.ARCHITECTURES.values() if c is not type(tiny))
    with pytest.raises(ValueError, match=f"not a {other.__name__}"):
        other.from_pretrained(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**record, "architecture": "Nope"}))
    with pytest.raises(ValueError, match="unknown architecture 'Nope'"):
        load_pretrained(tmp_path)


def test_push_uploads_the_saved_folder_in_one_commit(tiny, tmp_path, monkeypatch):
    calls = []
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda self, **kw: calls.append(("create", kw)))

    def upload_folder(self, **kw):
        calls.append(("upload", {**kw, "files": sorted(p.name for p in kw["folder_path"].iterdir())}))
        return "https://huggingface.co/org/tiny/commit/abc"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    tiny.save_pretrained(tmp_path, model_card_kwargs={"metrics": {"PSNR": "30 dB"}})
    assert push(tmp_path, "org/tiny") == "https://huggingface.co/org/tiny/commit/abc"
    assert [c[0] for c in calls] == ["create", "upload"]
    upload = calls[1][1]
    assert upload["repo_id"] == "org/tiny" and set(upload["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}
    assert {"config.json", "model.safetensors", "README.md"} <= set(upload["files"])
    assert "30 dB" in (tmp_path / "README.md").read_text()  # the saved card is what goes up
