"""Audio metrics on real speech shipped in vtok/assets: clean vs noisy ranking, offline MOS/ASR, UTMOS loading, validation."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

import vtok
from vtok.metrics import audio as A
from vtok.metrics import utmos as U
from vtok.metrics.weights import MissingWeightsError

SPEECH = Path(vtok.__file__).parent / "assets" / "speech"
ALSA_TEXT = "front left front center front right"


class FakeDictConfig:
    """Stands for the omegaconf.DictConfig a Lightning checkpoint pickles; unpickling it must never run this class."""

    built = False

    def __setstate__(self, state):
        FakeDictConfig.built = True


def _noisy(x: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + n * x.norm() / n.norm() / 10 ** (snr_db / 20)).clamp(-1, 1)


@pytest.fixture(scope="module")
def speech() -> tuple[torch.Tensor, int]:
    w, sr = sf.read(SPEECH / "alsa_front.wav", dtype="float32")
    return torch.from_numpy(w)[None, None], sr  # (1,1,T) at 24 kHz


@pytest.fixture(scope="module")
def noisy(speech) -> torch.Tensor:
    return _noisy(speech[0], 0.0)


@pytest.fixture(scope="module")
def asr() -> A.WhisperASR:
    return A.WhisperASR()


def test_pesq_stoi_rank_clean_above_noisy(speech, noisy):
    x, sr = speech
    p_clean, p_noisy = A.pesq_wb(x, x, sr).item(), A.pesq_wb(x, noisy, sr).item()
    s_clean, s_noisy = A.stoi(x, x, sr).item(), A.stoi(x, noisy, sr).item()
    assert p_clean > 4.5 and p_noisy < 2.0
    assert s_clean > 0.99 and s_noisy < s_clean - 0.05


def test_mel_distance_and_si_sdr(speech, noisy):
    x, sr = speech
    assert A.mel_distance(x, x, sr).item() == 0.0
    assert A.mel_distance(x, noisy, sr).item() > 1.0
    assert A.si_sdr(x, x).item() > 100
    assert abs(A.si_sdr(x, _noisy(x, 10.0)).item() - 10.0) < 1.0  # white noise at 10 dB SNR, barely clipped


def test_distillmos_and_dnsmos_offline_rank_clean_above_noisy(speech, noisy):
    x, sr = speech
    distill, dns = A.DistillMOS(), A.DNSMOS()
    clean_noisy = torch.cat([x, noisy])  # a batch of two clips
    d = distill(clean_noisy, sr)
    assert d.shape == (2,) and d[0] > 3.5 and d[0] > d[1] + 1.0
    s = dns(clean_noisy, sr)
    assert set(s) == {"ovrl", "sig", "bak", "p808"}
    assert s["ovrl"][0] > s["ovrl"][1] + 0.5 and s["bak"][0] > s["bak"][1] + 1.0


def test_whisper_wer_low_on_clean_high_on_heavy_noise(speech, asr):
    x, sr = speech
    clean = asr(x, sr)
    assert A.word_error_rate([ALSA_TEXT], clean) == (0.0, 0.0)
    wer, cer = A.word_error_rate([ALSA_TEXT], asr(_noisy(x, -5.0), sr))
    assert wer >= 0.5 and cer > 0.2
    assert A.normalize_text("Front, LEFT!  front") == "front left front"


def test_aggregator_streams_batches_and_states_protocol(speech, noisy):
    x, sr = speech
    m = A.AudioMetrics()
    m.update(x, x, sr)
    m.update(torch.cat([x, x]), torch.cat([noisy, x]), sr)
    out = m.compute()
    assert out["num_clips"] == 3
    for k in ("pesq", "stoi", "mel_distance", "si_sdr", "distillmos", "dnsmos_ovrl", "dnsmos_p808", "wer", "cer"):
        assert math.isfinite(out[k]), k
    assert 0 < out["mel_distance"] and out["wer"] < 0.5
    p = m.protocol()
    assert p["input_sample_rates"] == [sr] and p["pesq"]["mode"] == "wb" and p["pesq"]["sample_rate"] == 16000
    assert "transcript of the original" in p["wer"]["reference"] and "tiny.en" in p["wer"]["asr"]
    assert "distill_mos_v7" in p["distillmos"]["weights"]

    m = A.AudioMetrics(metrics=("wer",))
    m.update(x, x, sr, texts=[ALSA_TEXT])
    assert m.compute()["wer"] == 0.0 and m.protocol()["wer"]["reference"] == "given reference texts"
    m.reset()
    assert m.compute() == {"num_clips": 0.0}


@pytest.mark.parametrize(
    "ref, deg, match",
    [
        (torch.zeros(1, 1, 100, dtype=torch.int16), torch.zeros(1, 1, 100, dtype=torch.int16), "float"),
        (torch.zeros(1, 2, 100), torch.zeros(1, 2, 100), r"\(B,1,T\)"),
        (torch.zeros(2, 100), torch.zeros(2, 100), r"\(B,1,T\)"),
        (torch.zeros(1, 1, 1, 100), torch.zeros(1, 1, 1, 100), r"\(B,1,T\)"),
        (torch.zeros(1, 1, 100), torch.zeros(1, 1, 90), "equal shape"),
        (torch.zeros(1, 1, 0), torch.zeros(1, 1, 0), "non-empty"),
        (torch.full((1, 1, 100), float("nan")), torch.zeros(1, 1, 100), "finite"),
    ],
)
def test_bad_inputs_raise_value_error(ref, deg, match):
    with pytest.raises(ValueError, match=match):
        A.pesq_wb(ref, deg, 16000)


def test_bad_aggregator_arguments_raise_value_error(speech):
    x, sr = speech
    with pytest.raises(ValueError, match="expected metrics from"):
        A.AudioMetrics(metrics=("pesq", "fad"))
    m = A.AudioMetrics(metrics=("si_sdr",))
    with pytest.raises(ValueError, match="sample rate"):
        m.update(x, x, 16000.0)
    with pytest.raises(ValueError, match="reference texts"):
        m.update(x, x, sr, texts=["a", "b"])
    assert A.as_batch(torch.zeros(50)).shape == (1, 1, 50) and A.as_batch(torch.zeros(1, 50)).shape == (1, 1, 50)


def test_utmos_without_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VTOK_CACHE", str(tmp_path / "vtok"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="UTMOS22 strong weights: none given"):
        A.AudioMetrics(metrics=("pesq", "utmos"))
    with pytest.raises(MissingWeightsError, match="no file at"):
        U.load_utmos(tmp_path / "absent.safetensors")
    with pytest.raises(MissingWeightsError, match="UTMOS-demo"):
        U.resolve_utmos_weights("hub", local_files_only=True)
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(MissingWeightsError, match="safetensors only"):
        U.load_utmos(tmp_path / "w.pt")


@pytest.fixture(scope="module")
def random_utmos(tmp_path_factory) -> tuple[U.UTMOS22Strong, Path]:
    torch.manual_seed(0)
    model = U.UTMOS22Strong().eval()
    path = tmp_path_factory.mktemp("utmos") / "utmos22_strong.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


def test_utmos_random_weights_load_strictly_and_score(random_utmos, speech):
    model, path = random_utmos
    x, sr = speech
    clip = x[..., : sr]  # 1 s keeps the 95M-parameter wav2vec2 fast on CPU
    m = A.AudioMetrics(metrics=("utmos",), utmos_weights=str(path))
    m.update(clip, clip, sr)
    score = m.compute()["utmos"]
    assert math.isfinite(score)
    with torch.no_grad():
        assert score == pytest.approx(model(A.to_16k(clip, sr)).item(), abs=1e-4)
    assert m.protocol()["utmos"]["sample_rate"] == 16000


def test_utmos_converts_official_lightning_layout(random_utmos, tmp_path):
    model, _ = random_utmos
    sd = model.state_dict()
    official = {}
    for k, v in sd.items():  # the inverse of the official -> vtok key map, with full embedding tables
        if k.startswith("wav2vec2."):
            official["feature_extractors.0.ssl_model." + k.removeprefix("wav2vec2.")] = v
        elif k.startswith("blstm."):
            official["output_layers.0.decoder_rnn." + k.removeprefix("blstm.")] = v
        elif k.startswith("projection."):
            official[k.replace("projection.0.", "output_layers.1.net.0.").replace("projection.2.", "output_layers.1.net.3.")] = v
    domains, judges = torch.randn(3, 128), torch.randn(3000, 128)
    domains[U.DOMAIN_ID], judges[U.JUDGE_ID] = sd["domain_emb"][0], sd["judge_emb"][0]
    official["feature_extractors.1.embedding.weight"] = domains
    official["output_layers.0.judge_embedding.weight"] = judges
    src = tmp_path / "epoch=3-step=7459.ckpt"
    # Lightning also pickles the Hydra config; weights_only must not build it, nor refuse the file for it
    torch.save({"epoch": 3, "global_step": 7459, "state_dict": official, "hyper_parameters": {"cfg": FakeDictConfig()}}, src)
    dst = U.convert_utmos_checkpoint(src, tmp_path / "utmos.safetensors")
    loaded = U.load_utmos(dst).state_dict()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert not FakeDictConfig.built
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="lacks"):
        U.convert_utmos_checkpoint(tmp_path / "bad.ckpt", tmp_path / "bad.safetensors")
