"""Classic-codec baselines (JPEG, WebP, Opus) and the rate-distortion plot, on the shipped photos and speech."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vtok import assets
from vtok.evaluation import codecs
from vtok.evaluation.codecs import audio_round_trip, image_round_trip, protocol, qualities_bracketing
from vtok.evaluation.plots import rd_plot


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.stack([assets.load_image(p, size=128) for p in assets.sample_image_paths()])


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """Three real 2 s speech clips, float (3,1,48000) at 24 kHz."""
    return torch.stack([assets.load_audio(p)[0][:, :48_000] for p in assets.sample_speech_paths()])


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / ((x - y) ** 2).flatten(1).mean(1))


def best_lag(ref: torch.Tensor, out: torch.Tensor, max_lag: int = 20) -> int:
    """Lag l (samples) maximising sum ref[n] * out[n + l]; positive means `out` is late."""
    a, b = ref.double().numpy(), out.double().numpy()
    core = slice(max_lag, len(a) - max_lag)
    scores = [np.dot(a[core], np.roll(b, -lag)[core]) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_image_round_trip_shape_range_and_bits(images, codec):
    x_hat, bits = image_round_trip(images, codec, 50)
    assert x_hat.shape == images.shape and x_hat.dtype == images.dtype
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    assert bits.shape == (len(images),) and torch.all(bits % 8 == 0)
    _, payload = image_round_trip(images, codec, 50, cost="payload")
    assert torch.all((0 < payload) & (payload < bits))
    # odd sizes go through 4:2:0 too
    odd = images[:1, :, :63, :65]
    assert image_round_trip(odd, codec, 50)[0].shape == odd.shape


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_higher_quality_costs_more_bits_and_gives_higher_psnr(images, codec):
    bits, quality = [], []
    for q in (10, 30, 50, 75, 90):
        x_hat, b = image_round_trip(images, codec, q)
        bits.append(b.mean().item())
        quality.append(psnr(images, x_hat).mean().item())
    assert all(a < b for a, b in zip(bits, bits[1:])), bits
    assert all(a < b for a, b in zip(quality, quality[1:])), quality
    assert 20 < quality[0] and quality[-1] < 45


# ---------------------------------------------------------------- audio
@pytest.mark.parametrize("sample_rate", [24_000, 16_000])
def test_opus_round_trip_keeps_length_and_alignment(speech, sample_rate):
    wav = speech[:2]
    if sample_rate != 24_000:
        import torchaudio.functional as AF

        wav = AF.resample(wav, 24_000, sample_rate).clamp(-1, 1)
    wav = wav[..., : wav.shape[-1] - 7]  # a length that is no multiple of an Opus frame
    for bitrate in (8_000, 24_000, 96_000):
        wav_hat, bps = audio_round_trip(wav, sample_rate, "opus", bitrate)
        assert wav_hat.shape == wav.shape and wav_hat.dtype == wav.dtype
        assert -1 <= wav_hat.min() and wav_hat.max() <= 1
        assert bps.shape == (len(wav),)
        lags = [best_lag(wav[i, 0], wav_hat[i, 0]) for i in range(len(wav))]
        # libopus' SILK/hybrid modes keep a sub-sample-ish internal resampler delay; CELT is exact
        assert all(abs(lag) <= 1 for lag in lags), (bitrate, lags)
        if bitrate == 96_000:
            assert lags == [0] * len(wav)


def test_opus_higher_bitrate_costs_more_and_errs_less(speech):
    rates, errors = [], []
    for bitrate in (8_000, 16_000, 32_000, 64_000):
        wav_hat, bps = audio_round_trip(speech, 24_000, bitrate=bitrate)
        _, payload = audio_round_trip(speech, 24_000, bitrate=bitrate, cost="payload")
        assert torch.all(payload < bps)
        if bitrate >= 16_000:  # VBR on speech lands near the target
            assert 0.65 * bitrate < payload.mean() < 1.35 * bitrate
        rates.append(bps.mean().item())
        errors.append(((wav_hat - speech) ** 2).mean().item())
    assert all(a < b for a, b in zip(rates, rates[1:])), rates
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_opus_unavailable_is_a_clear_error(speech, monkeypatch):
    monkeypatch.setattr(codecs, "_soundfile_opus", lambda: None)
    monkeypatch.setattr(codecs, "_ffmpeg", lambda: None)
    with pytest.raises(RuntimeError, match="Opus is unavailable"):
        audio_round_trip(speech, 24_000)


# ---------------------------------------------------------------- bracketing
@pytest.mark.parametrize("codec,target", [("jpeg", 20_000), ("webp", 12_000)])
def test_bracketing_images(images, codec, target):
    out = qualities_bracketing(images, codec, target, n=5)
    assert out["bracketed"] and out["unit"] == "bits per image" and 4 <= len(out["settings"]) <= 6
    assert out["settings"] == sorted(out["settings"])
    assert any(r <= target for r in out["rates"]) and any(r > target for r in out["rates"])
    q, r = out["settings"][0], out["rates"][0]
    assert image_round_trip(images, codec, q)[1].mean().item() == pytest.approx(r)
    json.dumps(out)


def test_bracketing_opus(speech):
    clip = speech[:1]
    out = qualities_bracketing(clip, "opus", 16_000, n=4, sample_rate=24_000)
    assert out["bracketed"] and out["unit"] == "bits/s" and len(out["settings"]) >= 4
    assert any(r <= 16_000 for r in out["rates"]) and any(r > 16_000 for r in out["rates"])


def test_bracketing_out_of_reach_warns(images):
    with pytest.warns(UserWarning, match="below the lowest"):
        out = qualities_bracketing(images, "jpeg", 100, n=4)  # a JPEG header alone is ~5000 bits
    assert not out["bracketed"] and len(out["settings"]) == 4 and min(out["rates"]) > 100


# ---------------------------------------------------------------- plot
def test_rd_plot_writes_png(tmp_path):
    curves = {
        "titok-s-128": [{"bits": 12 * n, "psnr": 18 + i, "lpips": 0.5 - 0.1 * i, "label": n}
                        for i, n in enumerate([32, 64, 128])],
        "jpeg": [{"bits": 9000 + 4000 * i, "psnr": 22 + 2 * i} for i in range(4)],
    }
    path = rd_plot(curves, ys=("psnr", "lpips", "rfid"), out=tmp_path / "sub" / "rd.png", title="t")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (2 * 500, 400)  # rfid has no values: two panels


def test_rd_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="no curve"):
        rd_plot({"jpeg": [{"bits": 1000, "psnr": None}]}, ys=("psnr", "rfid"), out=tmp_path / "a.png")
    with pytest.raises(ValueError, match="at least one curve"):
        rd_plot({}, out=tmp_path / "b.png")


# ---------------------------------------------------------------- bad inputs and protocol
def test_bad_inputs_raise_value_error(images, speech):
    bad_image_calls = [
        lambda: image_round_trip(images, "png", 50),
        lambda: image_round_trip(images, "jpeg", 0),
        lambda: image_round_trip(images, "jpeg", 101),
        lambda: image_round_trip(images, "webp", -1),
        lambda: image_round_trip(images, "webp", 50.5),
        lambda: image_round_trip(images, "jpeg", 50, cost="bytes"),
        lambda: image_round_trip(images[:, :1], "jpeg", 50),
        lambda: image_round_trip(images[0], "jpeg", 50),
        lambda: image_round_trip(images * 2, "jpeg", 50),
        lambda: image_round_trip((images * 255).to(torch.uint8), "jpeg", 50),
        lambda: image_round_trip(images[:0], "jpeg", 50),
        lambda: audio_round_trip(speech, 24_000, "mp3"),
        lambda: audio_round_trip(speech, 24_000, bitrate=1_000),
        lambda: audio_round_trip(speech, 24_000, bitrate=300_000),
        lambda: audio_round_trip(speech, 0),
        lambda: audio_round_trip(speech[:, 0], 24_000),
        lambda: audio_round_trip(speech.repeat(1, 2, 1), 24_000),
        lambda: audio_round_trip(speech * 3, 24_000),
        lambda: audio_round_trip(speech[..., :0], 24_000),
        lambda: qualities_bracketing(images, "jpeg", -5),
        lambda: qualities_bracketing(images, "jpeg", 1000, n=1),
        lambda: qualities_bracketing(speech, "opus", 16_000),  # no sample_rate
        lambda: qualities_bracketing(speech, "jpeg", 16_000),  # audio given to an image codec
        lambda: protocol("h264"),
    ]
    for call in bad_image_calls:
        with pytest.raises(ValueError):
            call()


def test_protocol_records_settings():
    jpeg = protocol("jpeg", quality=75)
    assert jpeg["subsampling"] == "4:2:0" and jpeg["quality"] == 75 and "Pillow" in jpeg["library"]
    assert "headers included" in jpeg["bits"]
    webp = protocol("webp", quality=75, cost="payload")
    assert webp["lossless"] is False and "libwebp" in webp["encoder"] and webp["cost"] == "payload"
    opus = protocol("opus", bitrate=24_000, sample_rate=24_000)
    assert opus["encoder_sample_rate"] == 48_000 and opus["target_bitrate"] == 24_000 and "resample" in opus["resampling"]
    for p in (jpeg, webp, opus):
        json.dumps(p)
