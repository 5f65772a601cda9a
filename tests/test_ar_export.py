"""`vtok export` -> token shards -> TokenShards, on the shipped images and speech with tiny untrained tokenizers."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

import vtok
from vtok import assets
from vtok.ar import export as ex
from vtok.ar.export import export_tokens, tokenizer_hash
from vtok.ar.shards import TokenShards, load_shards

IMAGES = assets.ASSETS_DIR / "images"
SPEECH = assets.ASSETS_DIR / "speech"
FAST = dict(accelerator="cpu", devices=1, progress=False)


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    """Saved tiny tokenizers: image (One-D-Piece, 16 x 256 codes), audio (RVQ codec, 4 x 64), a second image one."""
    root = tmp_path_factory.mktemp("toks")
    for name, arch, seed in (("img", "onedpiece-tiny", 0), ("aud", "rvq-codec-tiny", 0), ("img2", "onedpiece-tiny", 1)):
        torch.manual_seed(seed)
        vtok.create(arch).eval().save_pretrained(root / name)
    return {k: str(root / k) for k in ("img", "aud", "img2")}


@pytest.fixture(scope="module")
def image_export(toks, tmp_path_factory):
    out = tmp_path_factory.mktemp("img_out")
    meta = export_tokens(toks["img"], IMAGES, out, num_tokens=8, shard_items=4, batch_size=3, **FAST)
    return out, meta


@pytest.fixture(scope="module")
def audio_export(toks, tmp_path_factory):
    out = tmp_path_factory.mktemp("aud_out")
    meta = export_tokens(toks["aud"], SPEECH, out, audio_seconds=0.5, shard_items=8, batch_size=4, **FAST)
    return out, meta


def entropy_bits(ids: np.ndarray, vocab: int) -> float:
    p = np.bincount(ids, minlength=vocab) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def test_image_export_matches_encode(toks, image_export):
    out, meta = image_export
    tok = vtok.load(toks["img"])
    files = assets.sample_image_paths()
    assert meta["format"] == "vtok.tokens/1" and meta["modality"] == "image"
    assert meta["tokenizer_hash"] == tokenizer_hash(tok) and meta["architecture"] == "OneDPiece"
    assert (meta["vocab_size"], meta["codebooks"], meta["dtype"], meta["tokens_per_item"]) == (256, 1, "uint16", 8)
    assert (meta["num_items"], meta["num_tokens_total"], meta["shards"]) == (6, 48, ["shard_00000", "shard_00001"])
    assert meta["special_tokens"] == {"bos": 256, "eos": 257, "pad": 258}
    assert meta["labels"] == {"mode": "none", "names": []} and meta["image_size"] == 32
    assert json.loads((out / "meta.json").read_text()) == json.loads(json.dumps(meta))
    assert (out / "shard_00000.bin").stat().st_size == 4 * 8 * 2  # uint16 on disk
    idx = np.load(out / "shard_00001.idx.npy")
    assert idx.dtype == np.int64 and idx.tolist() == [[0, 8, -1], [8, 8, -1]]

    shards = load_shards(out, tokenizer=toks["img"])
    assert len(shards) == 6 and shards.meta["tokenizer"] == toks["img"]
    with torch.no_grad():
        want = tok.encode(torch.stack([assets.load_image(p, size=32) for p in files]), num_tokens=8)
    for i in range(6):
        codes, label = shards[i]
        assert codes.dtype == torch.long and codes.shape == (8,) and label == -1
        assert torch.equal(codes, want[i])
    assert torch.equal(shards[-1][0], want[-1])
    with pytest.raises(IndexError):
        shards[6]
    assert shards.unigram_entropy_bits() == pytest.approx(entropy_bits(want.flatten().numpy(), 256), abs=1e-9)


def audio_windows(path, sample_rate, window):
    """The export's windows of one file, computed directly: full windows, plus a zero-padded last one >= half."""
    wav, _ = assets.load_audio(path, sample_rate)
    out = []
    for start in range(0, wav.shape[-1], window):
        clip = wav[:, start : start + window]
        if 2 * clip.shape[-1] >= window:
            out.append(torch.nn.functional.pad(clip, (0, window - clip.shape[-1])))
    return out


def test_audio_windows_match_encode(toks, audio_export):
    out, meta = audio_export
    tok = vtok.load(toks["aud"])
    windows = [w for p in assets.sample_speech_paths() for w in audio_windows(p, 16000, 8000)]
    assert len(windows) == meta["num_items"] == 27  # 10 + 9 + 8: two padded last windows, one tail dropped
    assert meta["padded_items"] == 2 and meta["codebooks"] == 4 and meta["tokens_per_second"] == 1000.0
    assert meta["sample_rate"] == 16000 and meta["tokens_per_item"] is None and meta["audio_seconds"] == 0.5
    assert meta["num_tokens_total"] == 27 * 4 * 500 and meta["dtype"] == "uint16"
    shards = TokenShards(out)
    with torch.no_grad():
        want = torch.cat([tok.encode(torch.stack(windows[i : i + 5])) for i in range(0, 27, 5)])
    assert want.shape == (27, 4, 500)
    for i in range(27):
        codes, label = shards[i]
        assert codes.shape == (4, 500) and label == -1
        assert torch.equal(codes, want[i]), i
    # the .bin is codebook-major per item: item 0's first 500 tokens are its first codebook
    flat = np.fromfile(out / "shard_00000.bin", dtype=np.uint16)
    assert np.array_equal(flat[:500], want[0, 0].numpy()) and np.array_equal(flat[500:1000], want[0, 1].numpy())
    per_stream = [entropy_bits(want[:, q].flatten().numpy(), 64) for q in range(4)]
    assert shards.unigram_entropy_bits() == pytest.approx(float(np.mean(per_stream)), abs=1e-9)
    assert shards.token_counts().sum() == 27 * 4 * 500


def test_audio_whole_utterances(toks, tmp_path):
    tok = vtok.load(toks["aud"])
    meta = export_tokens(toks["aud"], SPEECH, tmp_path, num_codebooks=2, **FAST)
    assert meta["codebooks"] == 2 and meta["num_items"] == 3 and meta["audio_seconds"] is None
    shards = load_shards(tmp_path, tok)
    for i, path in enumerate(assets.sample_speech_paths()):
        wav, _ = assets.load_audio(path, 16000)
        with torch.no_grad():
            want = tok.encode(wav[None], num_codebooks=2)[0]
        codes, _ = shards[i]
        assert codes.shape == (2, math.ceil(wav.shape[-1] / 16)) and torch.equal(codes, want)


def test_labels_from_folders(toks, tmp_path):
    files = assets.sample_image_paths()
    data = tmp_path / "data"
    for folder, pick in (("dog", files[:2]), ("cat", files[2:5])):
        (data / folder).mkdir(parents=True)
        for p in pick:
            shutil.copy(p, data / folder / p.name)
    meta = export_tokens(toks["img"], data, tmp_path / "out", labels="from-folders", **FAST)
    assert meta["labels"] == {"mode": "from-folders", "names": ["cat", "dog"]}
    shards = TokenShards(tmp_path / "out")
    assert [shards[i][1] for i in range(5)] == [0, 0, 0, 1, 1] and shards.labels.tolist() == [0, 0, 0, 1, 1]
    assert shards[0][0].shape == (16,)  # every token without num_tokens
    shutil.copy(files[5], data / files[5].name)
    with pytest.raises(ValueError, match="class folder"):
        export_tokens(toks["img"], data, tmp_path / "out2", labels="from-folders", **FAST)


def test_resume_skips_finished_shards(toks, tmp_path, monkeypatch):
    from vtok.train.export_module import TokenExportModule

    out = tmp_path / "out"
    export_tokens(toks["img"], IMAGES, out, shard_items=2, batch_size=2, **FAST)
    names = sorted(p.name for p in out.iterdir())
    before = {n: (out / n).read_bytes() for n in names}
    stamps = {n: (out / n).stat().st_mtime_ns for n in ("shard_00000.bin", "shard_00000.idx.npy")}

    encoded = []
    original = TokenExportModule.predict_step

    def counting(self, batch, batch_idx):
        encoded.extend(batch[1].tolist())
        return original(self, batch, batch_idx)

    monkeypatch.setattr(TokenExportModule, "predict_step", counting)
    # a kill after shard 2's .bin was renamed but before its index was; shard 1 truncated; meta never written
    (out / "shard_00002.idx.npy").unlink()
    (out / "shard_00001.bin").write_bytes(before["shard_00001.bin"][:10])
    (out / "shard_00001.bin.tmp").write_bytes(b"junk")
    (out / "meta.json").unlink()
    export_tokens(toks["img"], IMAGES, out, shard_items=2, batch_size=4, **FAST)
    assert sorted(encoded) == [2, 3, 4, 5]  # shards 1 and 2 only
    assert sorted(p.name for p in out.iterdir()) == names
    assert {n: (out / n).read_bytes() for n in names} == before
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps

    encoded.clear()
    export_tokens(toks["img"], IMAGES, out, shard_items=2, **FAST)  # complete: nothing to encode
    assert encoded == []
    with pytest.raises(ValueError, match="other settings"):
        export_tokens(toks["img"], IMAGES, out, shard_items=3, **FAST)
    with pytest.raises(ValueError, match="other settings"):
        export_tokens(toks["img2"], IMAGES, out, shard_items=2, **FAST)


def test_ranks_share_shards(toks, monkeypatch):
    """Rank r of W takes shards r, r+W, ...: two ranks cover every item once, batches never span shards."""
    tok = vtok.load(toks["img"])
    files = assets.sample_image_paths()
    plan = ex.plan_items("image", files, np.full(6, -1), shard_items=2)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(ex, "rank_world", lambda r=rank: (r, 2))
        sampler = ex.ShardBatchSampler(plan, IMAGES, batch_size=5, itemsize=2, codebooks=tok.num_codebooks)
        assert sampler.shards() == [rank, rank + 2][: 2 - rank]
        batches = list(sampler)
        assert len(batches) == len(sampler) and all(len({i // 2 for i in b}) == 1 for b in batches)
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(6))


DDP_SCRIPT = """
import sys
from vtok.ar import export as ex

write = ex.ShardWriter.write
def logged(self, shard, codes):
    rank = ex.rank_world()[0]
    with open(f"wrote_rank{rank}.txt", "a") as f:  # a file per rank: two processes' stdout lines can interleave
        f.write(f"{rank} {shard}\\n")
    write(self, shard, codes)


ex.ShardWriter.write = logged
ex.export_tokens(sys.argv[1], sys.argv[2], sys.argv[3], audio_seconds=0.5, shard_items=4, batch_size=4,
                 accelerator="cpu", devices=2, progress=False)
"""


def test_two_processes_share_the_shards(toks, audio_export, tmp_path):
    """Lightning DDP on 2 CPU processes (gloo): rank r writes shards r, r+2, ...; the items equal a 1-process
    export; a resumed run where one rank has nothing left to do completes too."""
    import os
    import subprocess
    import sys

    script, out = tmp_path / "export.py", tmp_path / "out"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(assets.ASSETS_DIR.parents[1])}

    def run() -> set[tuple[int, int]]:
        for old in tmp_path.glob("wrote_rank*.txt"):
            old.unlink()
        done = subprocess.run([sys.executable, str(script), toks["aud"], str(SPEECH), str(out)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = [line.split() for f in tmp_path.glob("wrote_rank*.txt") for line in f.read_text().splitlines()]
        return {(int(r), int(s)) for r, s in lines}

    assert run() == {(0, 0), (0, 2), (0, 4), (0, 6), (1, 1), (1, 3), (1, 5)}
    two, one = TokenShards(out), TokenShards(audio_export[0])
    assert len(two.meta["shards"]) == 7 and len(two) == len(one) == 27
    assert all(torch.equal(two[i][0], one[i][0]) for i in range(27))
    before = (out / "shard_00002.bin").read_bytes()
    (out / "shard_00002.idx.npy").unlink()
    (out / "meta.json").unlink()
    assert run() == {(0, 2)}  # rank 1 has no shard left
    assert (out / "shard_00002.bin").read_bytes() == before and (out / "meta.json").is_file()
    assert not list(out.glob("*.tmp"))


def test_tokenizer_hash_mismatch(toks, image_export):
    out, meta = image_export
    a, a_again, b = vtok.load(toks["img"]), vtok.load(toks["img"]), vtok.load(toks["img2"])
    assert a.config == b.config
    assert tokenizer_hash(a) == tokenizer_hash(a_again) != tokenizer_hash(b)
    shards = TokenShards(out)
    shards.check_tokenizer(a)
    with pytest.raises(ValueError) as err:
        load_shards(out, tokenizer=b)
    assert meta["tokenizer_hash"] in str(err.value) and tokenizer_hash(b) in str(err.value)
    with pytest.raises(ValueError, match="hash"):
        load_shards(out, tokenizer=toks["img2"])


def test_split_is_deterministic(audio_export):
    shards = TokenShards(audio_export[0])
    train, val = shards.split(0.2, seed=3)
    assert (train, val) == shards.split(0.2, seed=3) and len(val) == 5
    assert sorted(train + val) == list(range(27)) and not set(train) & set(val)
    assert shards.split(0.2, seed=4) != (train, val)
    assert shards.split(0.0, seed=0) == (list(range(27)), [])
    with pytest.raises(ValueError, match="val_fraction"):
        shards.split(1.0, seed=0)


@pytest.mark.parametrize("which, kwargs, match", [
    ("img", dict(labels="bogus"), "labels"),
    ("img", dict(num_tokens=0), "num_tokens"),
    ("img", dict(num_tokens=17), "num_tokens"),
    ("img", dict(num_codebooks=1), "audio tokenizers only"),
    ("img", dict(shard_items=0), "shard_items"),
    ("img", dict(data="missing"), "does not exist"),
    ("aud", dict(), "image files"),
    ("aud", dict(data=SPEECH, num_tokens=4), "image tokenizers only"),
    ("aud", dict(data=SPEECH, num_codebooks=5), "num_codebooks"),
    ("aud", dict(data=SPEECH, audio_seconds=0.0005), "one token frame"),
    ("aud", dict(data=SPEECH, audio_seconds=-1.0), "audio_seconds"),
])
def test_bad_export_inputs(toks, tmp_path, which, kwargs, match):
    kwargs = {"data": IMAGES, **kwargs}
    if kwargs["data"] == "missing":
        kwargs["data"] = tmp_path / "missing"
    with pytest.raises(ValueError, match=match):
        export_tokens(toks[which], out=tmp_path / "out", **kwargs, **FAST)


def test_failed_export_does_not_lock_the_folder(toks, tmp_path):
    with pytest.raises(ValueError, match="images"):  # the tokenizer refuses 16x16 images: no shard written
        export_tokens(toks["img"], IMAGES, tmp_path, image_size=16, **FAST)
    assert export_tokens(toks["img"], IMAGES, tmp_path, **FAST)["num_items"] == 6


def test_bad_shard_folders(image_export, tmp_path):
    with pytest.raises(ValueError, match="no meta.json"):
        TokenShards(tmp_path)
    shutil.copytree(image_export[0], tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    (tmp_path / "a" / "meta.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ValueError, match="format"):
        TokenShards(tmp_path / "a")
    (tmp_path / "a" / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "a" / "shard_00001.bin").write_bytes(b"\0" * 6)
    with pytest.raises(ValueError, match="truncated"):
        TokenShards(tmp_path / "a")
    (tmp_path / "a" / "shard_00001.bin").unlink()
    with pytest.raises(ValueError, match="shard_00001.bin.*missing"):
        TokenShards(tmp_path / "a")
