"""WavTokenizer: official-weight conversion (fixture from the official code), sizes, shapes, checks, training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import vtok
from vtok import assets
from vtok.audio.wavtokenizer import WavTokenizer
from vtok.hub import load_state_strict

FIXTURES = Path(__file__).parent / "fixtures" / "wavtokenizer"
OFFICIAL = FIXTURES / "official_tiny.safetensors"
# measured on the official modules built from the official yaml configs (see fixtures/wavtokenizer/README.md)
OFFICIAL_PARAMS = {"wavtokenizer-small-40": 80_913_988, "wavtokenizer-small-75": 80_552_420}
OFFICIAL_SEANET_DECODER = 8_802_274  # built by the official feature extractor, never used
VTOK_PARAMS = {"wavtokenizer-small-40": 72_051_810, "wavtokenizer-small-75": 71_690_242}
ADALN_EXTRA = 13 * 6 * 768  # 13 AdaLayerNorms keep 4 rows of scale + shift; vtok's plain LayerNorms keep one


@pytest.fixture(scope="module")
def tiny() -> WavTokenizer:
    torch.manual_seed(0)
    return vtok.create("wavtokenizer-tiny").eval()


@pytest.fixture(scope="module")
def wav() -> torch.Tensor:
    """0.2 s of real speech at 24 kHz and a quieter copy: (2, 1, 4800)."""
    x, _ = assets.load_audio(assets.sample_speech_paths()[0], sample_rate=24000)
    x = x[None, :, 24000:28800]
    return torch.cat([x, 0.5 * x])


@pytest.fixture(scope="module")
def official() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(official state dict, input/ids/reconstruction, vtok config) of the fixture."""
    tensors = load_file(str(OFFICIAL))
    with safe_open(str(OFFICIAL), "pt") as f:
        config = json.loads(f.metadata()["vtok_config"])
    state = {k.removeprefix("official."): v for k, v in tensors.items() if k.startswith("official.")}
    io = {k: v for k, v in tensors.items() if not k.startswith("official.")}
    return state, io, config


# --- official weights ---------------------------------------------------------------------------
def test_converted_fixture_reproduces_official_ids_and_audio(official) -> None:
    state, io, config = official
    assert any(k.startswith("feature_extractor.encodec.decoder.") for k in state)  # the unused decoder is dropped
    extra = {"multiperioddisc.discriminators.0.convs.0.bias": torch.zeros(4), "dac.x": torch.zeros(1),
             "dacdiscriminator.discriminator.x": torch.zeros(1), "melspec_loss.mel_spec.mel_scale.fb": torch.zeros(3, 2)}
    model = WavTokenizer(**config).eval()
    load_state_strict(model, WavTokenizer.convert_official({**state, **extra}, config), str(OFFICIAL))
    with torch.no_grad():
        ids = model.encode(io["input"])
        assert ids.shape == (1, 1, 75) and torch.equal(ids, io["ids"])
        recon = model.decode_latents(model.quantizer.decode_ids(io["ids"][:, 0]))
        torch.testing.assert_close(recon, io["reconstruction"], rtol=0, atol=1e-5)
        torch.testing.assert_close(model.decode(io["ids"]), io["reconstruction"].clamp(-1, 1), rtol=0, atol=1e-5)


def test_converter_keeps_adanorm_row_zero(official) -> None:
    state, _, config = official
    out = WavTokenizer.convert_official(state, config)
    assert torch.equal(out["backbone.convnext.1.norm.weight"], state["backbone.convnext.1.norm.scale.weight"][0])
    assert torch.equal(out["backbone.norm.bias"], state["backbone.norm.shift.weight"][0])
    assert out["quantizer.vq._codebook.embed"].shape == (1, 512, 32) and out["quantizer.vq._codebook.initted"].item()


def test_unknown_official_key_fails_strict_load(official) -> None:
    state, _, config = official
    model = WavTokenizer(**config)
    with pytest.raises(ValueError, match="unexpected keys.*backbone.extra"):
        load_state_strict(model, WavTokenizer.convert_official({**state, "backbone.extra": torch.zeros(1)}, config), "x")


@pytest.mark.parametrize("name, frame", [("wavtokenizer-small-40", "frame40"), ("wavtokenizer-small-75", "frame75")])
def test_full_size_official_state_converts_to_exactly_our_keys(name: str, frame: str) -> None:
    shapes = json.loads((FIXTURES / "official_shapes.json").read_text())[frame]
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    state["feature_extractor.encodec.quantizer.vq.layers.0._codebook.inited"] = torch.ones(1)
    entry = vtok.registry.get_entry(name)
    converted = WavTokenizer.convert_official(state, entry.config)
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in WavTokenizer(**entry.config).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours


def test_official_pickles_are_refused_with_instructions(tmp_path) -> None:
    with pytest.raises(ValueError, match="never unpickles.*weights_only=True.*state_dict"):
        vtok.load("wavtokenizer-small-75")
    with pytest.raises(ValueError, match="never unpickles"):
        vtok.load("wavtokenizer-large-40", official_weights=tmp_path / "wavtokenizer_large_unify_600_24k.ckpt")


# --- the zoo ------------------------------------------------------------------------------------
def test_registry_entries() -> None:
    expected = {
        "wavtokenizer-small-40": (600, "novateur/WavTokenizer", "WavTokenizer_small_600_24k_4096.ckpt"),
        "wavtokenizer-small-75": (320, "novateur/WavTokenizer", "WavTokenizer_small_320_24k_4096.ckpt"),
        "wavtokenizer-medium-75": (320, "novateur/WavTokenizer-medium-speech-75token", None),
        "wavtokenizer-large-40": (600, "novateur/WavTokenizer-large-unify-40token", None),
        "wavtokenizer-large-75": (320, "novateur/WavTokenizer-large-speech-75token", None),
    }
    assert set(vtok.list_models("wavtokenizer-*")) == {*expected, "wavtokenizer-tiny", "wavtokenizer-speech-24k"}
    for name, (hop, repo, file) in expected.items():
        entry = vtok.registry.get_entry(name)
        assert (entry.official, entry.config["n_fft"]) == (repo, 4 * hop)
        assert entry.official_file.endswith(".ckpt") and (file is None or entry.official_file == file)
        with torch.device("meta"):
            model = vtok.create(name)
        assert (model.hop_length, model.tokens_per_second, model.vocab_size, model.num_codebooks) == (hop, 24000 / hop, 4096, 1)
        assert model.bits_per_second == 12 * 24000 / hop  # 480 / 900 bps


@pytest.mark.parametrize("name", sorted(VTOK_PARAMS))
def test_paper_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = vtok.create(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == VTOK_PARAMS[name] == OFFICIAL_PARAMS[name] - OFFICIAL_SEANET_DECODER - ADALN_EXTRA
    assert abs(count / (OFFICIAL_PARAMS[name] - OFFICIAL_SEANET_DECODER) - 1) < 0.02


def test_quantizer_matches_the_official_training_options() -> None:
    q = vtok.registry.get_entry("wavtokenizer-large-75").config["quantizer"]
    assert q == {"kind": "vq", "codebook_size": 4096, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 200,
                 "dead_code_threshold": 2.0, "commitment_weight": 1.0, "gradient": "ste"}


def test_istft_same_inverts_a_same_padded_stft() -> None:
    from vtok.nn.vocos import istft_same

    n_fft, hop = 64, 16
    x = torch.randn(2, 40 * hop, dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    pad = (n_fft - hop) // 2
    spec = torch.stft(torch.nn.functional.pad(x, (pad, pad)), n_fft, hop, window=window, center=False, return_complex=True)
    assert spec.shape[-1] == 40
    torch.testing.assert_close(istft_same(spec, n_fft, hop, window), x)


# --- encode / decode on tiny --------------------------------------------------------------------
def test_encode_decode_shapes_and_ranges(tiny: WavTokenizer, wav: torch.Tensor) -> None:
    assert (tiny.hop_length, tiny.sample_rate, tiny.vocab_size) == (16, 24000, 64)
    with torch.no_grad():
        ids = tiny.encode(wav[..., :1000])
        assert ids.shape == (2, 1, 63) and ids.dtype == torch.long  # ceil(1000 / 16)
        assert 0 <= int(ids.min()) and int(ids.max()) < tiny.vocab_size
        y = tiny.decode(ids)
    assert y.shape == (2, 1, 63 * 16) and y.dtype == torch.float32
    assert -1.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_forward_matches_encode_decode_in_eval(tiny: WavTokenizer, wav: torch.Tensor) -> None:
    with torch.no_grad():
        out = tiny(wav)
        ids = tiny.encode(wav)
        assert set(out) == {"wav_hat", "ids", "loss", "stats"}
        assert torch.equal(out["ids"], ids) and out["wav_hat"].shape == wav.shape
        torch.testing.assert_close(tiny.decode(ids)[..., : wav.shape[-1]], out["wav_hat"].clamp(-1, 1))


def test_encode_in_training_mode_changes_nothing(wav: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = vtok.create("wavtokenizer-tiny").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ids = model.encode(wav)
        assert torch.equal(ids, model.eval().encode(wav))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 2, 1000), "mono"),
        (torch.zeros(2, 1, 1000, dtype=torch.int16), "float"),
        (torch.zeros(2, 1, 1000, dtype=torch.float64).long(), "float"),
        (torch.full((2, 1, 1000), 1.5), r"values in \[-1, 1\].*got range"),
        (torch.zeros(2, 1, 8), "expected at least 16 samples.*got 8"),
        (torch.zeros(2, 1, 0), "non-empty"),
        (torch.zeros(1000), r"expected shape \(B, 1, T\), got \(1000,\)"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_audio_raises(tiny: WavTokenizer, bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.encode(bad)


def test_wrong_sample_rate_raises(tiny: WavTokenizer, wav: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="expected sample rate 24000 Hz, got 16000 Hz"):
        tiny.check_audio(wav, sample_rate=16000)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 2, 63, dtype=torch.long), r"\(B, 1, T'\), got shape \(2, 2, 63\)"),
        (torch.zeros(2, 1, 63), "got dtype torch.float32"),
        (torch.zeros(2, 63, dtype=torch.long), r"got shape \(2, 63\)"),
        (torch.zeros(2, 1, 0, dtype=torch.long), r"got shape \(2, 1, 0\)"),
        (torch.full((2, 1, 63), 64), r"values in \[0, 64\)"),
        (torch.full((2, 1, 63), -1), r"values in \[0, 64\)"),
        ([[0, 1]], "got list"),
    ],
)
def test_bad_ids_raise(tiny: WavTokenizer, bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.decode(bad)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"quantizer": {"kind": "rvq", "codebook_size": 64, "num_codebooks": 2}}, "kind 'vq'"),
        ({"quantizer": {"kind": "vq", "dim": 8, "codebook_size": 64}}, "must equal latent_dim"),
        ({"ratios": []}, "ratios"),
        ({"dim": 48}, "multiple of 32"),
        ({"n_fft": 63}, "even n_fft"),
        ({"num_layers": 0}, "sizes >= 1"),
    ],
)
def test_bad_config_raises(override: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vtok.create("wavtokenizer-tiny", **override)


# --- save / load, training ----------------------------------------------------------------------
def test_save_pretrained_and_load_round_trip(tiny: WavTokenizer, wav: torch.Tensor, tmp_path) -> None:
    tiny.save_pretrained(tmp_path / "tok")
    loaded = vtok.load(tmp_path / "tok")
    assert type(loaded) is WavTokenizer and loaded.config == tiny.config and not loaded.training
    with torch.no_grad():
        ids = tiny.encode(wav)
        assert torch.equal(loaded.encode(wav), ids)
        assert torch.equal(loaded.decode(ids), tiny.decode(ids))
    record = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert record["architecture"] == "WavTokenizer" and record["vtok"]["tokens_per_second"] == 1500.0


def test_one_training_step(wav: torch.Tensor) -> None:
    from vtok.nn.audio_losses import MultiResolutionMelLoss

    torch.manual_seed(0)
    model = vtok.create("wavtokenizer-tiny").train()
    codebook = model.quantizer.codebook.detach().clone()
    head = model.head.out.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(wav)
    assert out["wav_hat"].shape == wav.shape and out["ids"].shape == (2, 1, 300) and out["loss"].requires_grad
    loss = MultiResolutionMelLoss(24000)(out["wav_hat"], wav) + (out["wav_hat"] - wav).abs().mean() + out["loss"]
    loss.backward()
    for module in (model.encoder.model[0], model.backbone.embed, model.backbone.pos_net[2], model.head.out):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    opt.step()
    assert not torch.equal(model.head.out.weight, head)
    assert not torch.equal(model.quantizer.codebook, codebook)  # EMA update of the codebook


def test_the_audio_lightning_module_takes_it() -> None:
    from vtok.train.audio_module import AudioCodecTraining

    module = AudioCodecTraining("wavtokenizer-tiny", quantizer_weight=1000.0)
    assert isinstance(module.model, WavTokenizer)
