"""Chunked encode/decode of long audio (vtok.audio.chunking): same ids as whole-signal encoding on real speech."""
import math

import pytest
import torch

import vtok
from vtok import assets
from vtok.audio.chunking import chunk_frames, decode_chunked, spans

# Measured on the shipped speech (13.4 s), seeded weights, k-means-initialised codebooks, 2 s chunks:
# the frames around a seam whose ids change when windows have no context at all (before, after the seam).
SEAM_REACH = {"rvq-codec-tiny": (4, 3)}  # a finite receptive field; wavtokenizer-tiny's LSTM reaches ~33 frames


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine, per-step thread barriers make the LSTMs 1000x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def speech(sample_rate: int) -> torch.Tensor:
    """The three shipped clips end to end, (1, 1, T) at sample_rate."""
    return torch.cat([assets.load_audio(p, sample_rate)[0] for p in assets.sample_speech_paths()], -1)[None]


def codec(name: str, **overrides) -> vtok.AudioTokenizer:
    """A seeded model whose codebooks are k-means-initialised on speech latents, then jittered apart.

    Random codebooks give a handful of distinct ids; k-means on little data gives near-duplicate codes
    whose ties flip with float rounding. Jittered k-means codes give many ids and honest margins.
    """
    torch.manual_seed(0)
    quantizer = dict(vtok.create(name, **overrides).config["quantizer"], kmeans_init=True, kmeans_iters=10)
    if "quantizer_dropout" in quantizer:
        quantizer["quantizer_dropout"] = False
    torch.manual_seed(0)
    tok = vtok.create(name, **overrides, quantizer=quantizer).train()
    wav = speech(tok.sample_rate)
    with torch.no_grad():
        tok(torch.cat([g * wav[..., : 12 * tok.sample_rate].reshape(12, 1, -1) for g in (1.0, 0.5)]))
        gen = torch.Generator().manual_seed(1)
        for name_, buf in tok.named_buffers():
            if name_.endswith("_codebook.embed"):
                buf.add_(0.01 * buf.std() * torch.randn(buf.shape, generator=gen))
    return tok.eval()


@pytest.fixture(scope="module", params=["rvq-codec-tiny", "wavtokenizer-tiny"])
def tok(request):
    return codec(request.param)


@pytest.fixture(scope="module")
def causal():
    """rvq-codec-tiny made causal, with an LSTM at its bottlenecks (the layout of rvq-codec-24k)."""
    return codec("rvq-codec-tiny", causal=True, lstm_layers=1)


def differing_frames(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a != b).any(1)[0].nonzero()[:, 0]


@torch.no_grad()
def test_chunked_encode_gives_the_whole_signal_ids(tok):
    wav = speech(tok.sample_rate)
    whole = tok.encode(wav)
    assert whole.unique().numel() > 32  # ids worth comparing
    for chunk_seconds in (2.0, 0.77):
        assert torch.equal(tok.encode(wav, chunk_seconds=chunk_seconds), whole), chunk_seconds
    assert torch.equal(tok.encode(wav, chunk_seconds=100.0), whole)  # one window
    batch = torch.cat([wav, 0.5 * wav.flip(-1)])
    assert torch.equal(tok.encode(batch, chunk_seconds=2.0), tok.encode(batch))


@torch.no_grad()
def test_seams_without_context_change_only_nearby_frames():
    tok = codec("rvq-codec-tiny")
    wav = speech(tok.sample_rate)
    whole = tok.encode(wav)
    chunk = 2000  # frames in 2 s
    bad = differing_frames(tok.encode(wav, chunk_seconds=2.0, overlap_seconds=0.0), whole)
    assert len(bad) > 0  # a seam with no context is visible...
    offset = (bad + chunk // 2) % chunk - chunk // 2  # signed distance to the nearest seam
    before, after = SEAM_REACH["rvq-codec-tiny"]
    assert offset.min() >= -before and offset.max() <= after  # ...but only near it
    assert torch.equal(tok.encode(wav, chunk_seconds=2.0, overlap_seconds=before / tok.tokens_per_second), whole)


@torch.no_grad()
def test_causal_chunks_need_left_context_only(causal):
    wav = speech(causal.sample_rate)
    whole = causal.encode(wav)
    chunk = 2000
    bad = differing_frames(causal.encode(wav, chunk_seconds=2.0, overlap_seconds=0.0), whole)
    assert len(bad) > 0 and (bad % chunk).min() >= 0 and (bad >= chunk).all()  # only after a seam, never in chunk 0
    assert torch.equal(causal.encode(wav, chunk_seconds=2.0), whole)
    ids = whole[..., :4000]
    exact = causal.decode(ids, chunk_seconds=1.0)  # hard cuts with a second of left context
    torch.testing.assert_close(exact, causal.decode(ids), atol=1e-5, rtol=0)


@torch.no_grad()
def test_windows_stay_short(tok, monkeypatch):
    wav = speech(tok.sample_rate)
    seen = []
    inner = tok._encode_ids

    def spy(w):
        seen.append(w.shape[-1])
        return inner(w)

    monkeypatch.setattr(tok, "_encode_ids", spy)
    tok.encode(wav, chunk_seconds=1.0, overlap_seconds=0.25)
    assert max(seen) <= 1.5 * tok.sample_rate and len(seen) == math.ceil(wav.shape[-1] / tok.sample_rate)


@torch.no_grad()
def test_chunked_decode_matches_whole_decode(tok):
    ids = tok.encode(speech(tok.sample_rate))
    whole = tok.decode(ids)
    chunked = tok.decode(ids, chunk_seconds=2.0)
    assert chunked.shape == whole.shape
    assert torch.equal(tok.decode(ids, chunk_seconds=100.0), whole)  # one window
    err = (chunked - whole).abs().max().item()
    rms = ((chunked - whole).pow(2).mean().sqrt() / whole.pow(2).mean().sqrt()).item()
    print(f"{type(tok).__name__}: chunked decode, max |diff| {err:.2e}, relative rms {rms:.2e}")
    if tok.config.get("dim") is None:  # rvq-codec-tiny: a finite receptive field inside the context
        assert err < 1e-5
    else:  # WavTokenizer: GroupNorm and attention in the Vocos pos-net see the whole window, so chunks differ
        seams = torch.arange(2 * tok.sample_rate, whole.shape[-1], 2 * tok.sample_rate)
        jumps = (chunked[..., seams] - chunked[..., seams - 1]).abs().max()
        assert jumps <= whole.diff(dim=-1).abs().max()  # the crossfade leaves no click at the seams


def test_spans_cover_every_frame_once():
    for total, chunk, left, right in ((10, 3, 2, 1), (7, 7, 0, 0), (1, 5, 4, 4), (100, 1, 0, 3)):
        got = spans(total, chunk, left, right)
        assert [f for _, _, c0, c1 in got for f in range(c0, c1)] == list(range(total))
        assert all(max(0, c0 - left) == w0 and min(total, c1 + right) >= w1 >= c1 for w0, w1, c0, c1 in got)


def test_crossfade_of_equal_windows_is_the_signal():
    """Windows that agree stitch to the same signal whatever the chunk, context and fade."""
    ids = torch.arange(50)[None, None]
    decode = lambda x: x.float().repeat_interleave(4, -1)  # (B,1,n) -> (B,1,4n)
    for chunk, context, fade in ((7, 3, 3), (5, 4, 8), (1, 2, 2), (50, 0, 0)):
        torch.testing.assert_close(decode_chunked(decode, ids, 4, chunk, context, context, fade), decode(ids))


@pytest.mark.parametrize("chunk, overlap", [(0.0, None), (-1.0, None), (float("nan"), None), ("2", None), (True, None),
                                            (1e-4, None), (1.0, -0.5), (1.0, float("inf")), (None, 0.5)])
def test_bad_chunk_arguments(chunk, overlap):
    torch.manual_seed(0)
    tok = vtok.create("wavtokenizer-tiny").eval()
    wav = speech(tok.sample_rate)[..., :4800]
    with pytest.raises(ValueError, match="chunk_seconds|overlap_seconds"):
        tok.encode(wav, chunk_seconds=chunk, overlap_seconds=overlap)
    with pytest.raises(ValueError, match="chunk_seconds|overlap_seconds"):
        tok.decode(torch.zeros(1, 1, 300, dtype=torch.long), chunk_seconds=chunk, overlap_seconds=overlap)
    with pytest.raises(ValueError, match="fade"):
        decode_chunked(lambda x: x, torch.zeros(1, 1, 10), 4, 5, 1, 1, 4)
    assert chunk_frames(1.0, 0.01, 100.0) == (100, 1)
