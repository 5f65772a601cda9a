"""RVQ codec (EnCodec line): shapes, bitrates, truncated RVQ, gradients, causality, input checks."""
from __future__ import annotations

import json

import pytest
import torch

import vtok
from vtok.audio.rvq_codec import RVQCodec


@pytest.fixture(scope="module")
def tiny() -> RVQCodec:
    torch.manual_seed(0)
    return vtok.create("rvq-codec-tiny").eval()


@pytest.fixture(scope="module")
def wav() -> torch.Tensor:
    return torch.rand(2, 1, 1000, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8


def test_registered_rates_and_sizes() -> None:
    assert {"rvq-codec-24k", "rvq-codec-16k", "rvq-codec-tiny"} <= set(vtok.list_models("rvq-codec-*"))
    big = vtok.create("rvq-codec-24k")
    assert (big.hop_length, big.tokens_per_second, big.bits_per_second) == (320, 75.0, 6000.0)
    assert (big.num_codebooks, big.vocab_size) == (8, 1024)
    # the official EnCodec 24 kHz SEANet encoder + decoder has exactly this many parameters
    assert sum(p.numel() for p in big.parameters()) == 14_851_810
    small = vtok.create("rvq-codec-16k")
    assert (small.tokens_per_second, small.bits_per_second) == (50.0, 4000.0)


def test_config_is_plain_json_and_complete(tiny: RVQCodec) -> None:
    json.dumps(tiny.config)
    assert set(tiny.config) == {"sample_rate", "channels", "ratios", "latent_dim", "lstm_layers", "causal", "activation", "quantizer"}
    assert (tiny.hop_length, tiny.num_codebooks, tiny.vocab_size, tiny.sample_rate) == (16, 4, 64, 16000)


def test_encode_decode_shapes_and_ranges(tiny: RVQCodec, wav: torch.Tensor) -> None:
    with torch.no_grad():
        ids = tiny.encode(wav)
        assert ids.shape == (2, 4, 63) and ids.dtype == torch.long  # 1000 samples padded to 1008 = 63 * 16
        assert 0 <= int(ids.min()) and int(ids.max()) < tiny.vocab_size
        y = tiny.decode(ids)
    assert y.shape == (2, 1, 1008) and y.dtype == torch.float32
    assert -1.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_fewer_codebooks_are_a_prefix_and_decode(tiny: RVQCodec, wav: torch.Tensor) -> None:
    with torch.no_grad():
        ids = tiny.encode(wav)
        coarse = tiny.encode(wav, num_codebooks=2)
        assert coarse.shape == (2, 2, 63) and torch.equal(coarse, ids[:, :2])
        assert tiny.decode(coarse).shape == (2, 1, 1008)
    for bad in (0, 5, True, 2.0):
        with pytest.raises(ValueError, match="num_codebooks"):
            tiny.encode(wav, num_codebooks=bad)


def test_decode_of_encode_matches_forward_in_eval(tiny: RVQCodec, wav: torch.Tensor) -> None:
    with torch.no_grad():
        out = tiny(wav)
        ids = tiny.encode(wav)
        assert torch.equal(out["ids"], ids)
        torch.testing.assert_close(tiny.decode(ids)[..., :1000], out["wav_hat"].clamp(-1, 1))


def test_gradients_reach_the_encoder(wav: torch.Tensor) -> None:
    torch.manual_seed(0)
    codec = vtok.create("rvq-codec-tiny").train()
    out = codec(wav)
    assert out["wav_hat"].shape == wav.shape and out["ids"].shape == (2, 4, 63)
    ((out["wav_hat"] - wav).pow(2).mean() + out["loss"]).backward()
    for module in (codec.encoder.model[0], codec.decoder.model[-1]):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_encode_in_training_mode_keeps_all_levels(wav: torch.Tensor) -> None:
    codec = vtok.create("rvq-codec-tiny").train()
    with torch.no_grad():
        ids = codec.encode(wav)
    assert int(ids.min()) >= 0 and ids.shape == (2, 4, 63)  # no quantizer-dropout -1s
    assert codec.quantizer.training


def test_causal_outputs_ignore_the_future() -> None:
    torch.manual_seed(0)
    codec = vtok.create("rvq-codec-tiny", causal=True, lstm_layers=1).eval()
    x = torch.rand(1, 1, 1008) * 2 - 1
    x2 = x.clone()
    x2[..., 500:] = torch.rand(1, 1, 508) * 2 - 1
    with torch.no_grad():
        ids, ids2 = codec.encode(x), codec.encode(x2)
        y, y2 = codec.decode(ids), codec.decode(ids2)
    frames = 500 // codec.hop_length  # frames that end before the change
    assert torch.equal(ids[..., :frames], ids2[..., :frames]) and not torch.equal(ids, ids2)
    torch.testing.assert_close(y[..., : frames * codec.hop_length], y2[..., : frames * codec.hop_length])


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 2, 1000), "mono"),
        (torch.zeros(2, 1, 1000, dtype=torch.int16), "float"),
        (torch.full((2, 1, 1000), 1.5), r"values in \[-1, 1\]"),
        (torch.zeros(2, 1, 8), "at least 16 samples"),
        (torch.zeros(1000), r"shape \(B, 1, T\)"),
    ],
)
def test_bad_audio_raises(tiny: RVQCodec, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.encode(bad)


def test_wrong_sample_rate_raises(tiny: RVQCodec, wav: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="expected sample rate 16000 Hz, got 24000 Hz"):
        tiny.check_audio(wav, sample_rate=24000)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 5, 63, dtype=torch.long), r"1 <= q <= 4.*got shape \(2, 5, 63\)"),
        (torch.zeros(2, 4, 63), "got dtype torch.float32"),
        (torch.zeros(2, 63, dtype=torch.long), r"got shape \(2, 63\)"),
        (torch.zeros(2, 4, 0, dtype=torch.long), r"got shape \(2, 4, 0\)"),
        (torch.full((2, 4, 63), 64), r"values in \[0, 64\)"),
        ([[0, 1]], "got list"),
    ],
)
def test_bad_ids_raise(tiny: RVQCodec, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.decode(bad)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"quantizer": {"kind": "vq", "codebook_size": 64}}, "kind 'rvq'"),
        ({"ratios": []}, "ratios"),
        ({"quantizer": {"kind": "rvq", "dim": 8, "codebook_size": 64, "num_codebooks": 2}}, "must equal latent_dim"),
        ({"activation": "relu"}, "'elu' or 'snake'"),
    ],
)
def test_bad_config_raises(override: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vtok.create("rvq-codec-tiny", **override)


def test_snake_activation_learns_alpha_and_keeps_elu_layout(wav: torch.Tensor) -> None:
    from vtok.nn.seanet import Snake

    torch.manual_seed(0)
    elu, snake = vtok.create("rvq-codec-tiny"), vtok.create("rvq-codec-tiny", activation="snake")
    alphas = [m for m in snake.modules() if isinstance(m, Snake)]
    assert alphas and len(alphas) == sum(isinstance(m, torch.nn.ELU) for m in elu.modules())
    # the same module indices as EnCodec's ELU layout (so official SEANet weights still map), plus one alpha each
    extra = {k for k in snake.state_dict() if k not in elu.state_dict()}
    assert extra and all(k.endswith(".alpha") for k in extra)
    x = torch.linspace(-3, 3, 7).view(1, 1, 7)
    assert torch.allclose(alphas[0](x.expand(1, alphas[0].alpha.shape[1], 7)), x + x.sin().pow(2))  # alpha = 1
    snake.train()
    out = snake(wav)
    (out["wav_hat"].abs().mean() + out["loss"]).backward()
    assert all(a.alpha.grad is not None and a.alpha.grad.abs().sum() > 0 for a in alphas)
