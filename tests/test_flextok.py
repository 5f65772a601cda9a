"""FlexTok: ordered registers -> FSQ ids, nested dropout, a rectified-flow decoder sampled with diffusers' Euler scheduler;
the official-weight converter against outputs of the official code (tests/fixtures/flextok)."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import vtok
from vtok import assets
from vtok.hub import load_state_strict
from vtok.image.flextok import FlexTok, sincos_2d

OFFICIAL_FIXTURE = Path(__file__).parent / "fixtures" / "flextok" / "official_tiny.safetensors"


@pytest.fixture(scope="module")
def tok():
    """flextok-tiny with its zero-initialised output projections made non-zero, as after some training."""
    torch.manual_seed(0)
    tok = vtok.create("flextok-tiny").eval()
    with torch.no_grad():
        tok.to_latents.weight.normal_(0, 0.5)
        tok.to_patches.weight.normal_(0, 0.02)
    return tok


@pytest.fixture(scope="module")
def images():
    return assets.sample_crops(3, 32, seed=0)


def test_ids_are_ordered_prefixes(tok, images):
    ids = tok.encode(images)
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < 64000 == tok.vocab_size
    assert torch.equal(tok.encode(images, num_tokens=4), ids[:, :4])


def test_registers_are_causal_and_patches_never_see_registers(tok, images):
    """Changing a later register's learned init changes neither earlier registers' codes nor anything before it."""
    z = tok.to_latent(images)
    before = tok.encode_registers(z)
    with torch.no_grad():
        tok.registers[10].add_(1.0)
    try:
        after = tok.encode_registers(z)
    finally:
        with torch.no_grad():
            tok.registers[10].sub_(1.0)
    assert torch.equal(before[:, :10], after[:, :10]) and not torch.equal(before[:, 10:], after[:, 10:])
    mask = tok.enc_mask
    patches = tok.grid**2
    assert mask[:patches, :patches].all() and not mask[:patches, patches:].any()
    assert torch.equal(mask[patches:, patches:], torch.ones(16, 16, dtype=torch.bool).tril())


@pytest.mark.parametrize("k", [1, 5, 16])
def test_any_prefix_decodes_deterministically_with_a_seed(tok, images, k):
    ids = tok.encode(images, num_tokens=k)
    a = tok.decode(ids, steps=3, generator=torch.Generator().manual_seed(1))
    b = tok.decode(ids, steps=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1


def test_euler_sampler_matches_a_hand_written_loop(tok, images):
    """diffusers' FlowMatchEulerDiscreteScheduler with sigmas i/T is x <- x - v/T from t=1 down to 1/T."""
    ids = tok.encode(images)
    noise = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cond, uncond = tok.condition(tok.quantizer.decode_ids(ids)), tok.condition(
            tok.quantizer.decode_ids(ids), null=torch.ones(3, dtype=torch.bool))
        z = noise.clone()
        for i in range(4, 0, -1):
            t = torch.full((3,), i / 4)
            v_c, v_u = tok.velocity(z, t, cond), tok.velocity(z, t, uncond)
            z = z - (v_u + 2.0 * (v_c - v_u)) / 4
        expected = ((z + 1) / 2).clamp(0, 1)
        got = tok.decode(ids, steps=4, guidance=2.0, noise=noise)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_nested_dropout_schemes():
    torch.manual_seed(0)
    for mode, allowed in (("pow2", {1, 2, 4, 8, 16}), ("uniform", set(range(1, 17))), ("uniform_pow2", {1, 2, 4, 8, 16})):
        tok = vtok.create("flextok-tiny", nested_dropout=mode)
        keep = tok.sample_keep(4000, torch.device("cpu"), torch.Generator().manual_seed(0))
        assert set(keep.tolist()) == allowed
    # uniform_pow2 rounds U{1..16} up: P(16) = 8/16
    assert (keep == 16).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_training_step_reduces_the_flow_loss(images):
    torch.manual_seed(0)
    tok = vtok.create("flextok-tiny").train()
    opt = torch.optim.AdamW(tok.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        out = tok(images, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert out["keep"].shape == (3,) and out["ids"].shape == (3, 16)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert tok.registers.grad is not None and tok.to_latents.weight.grad.abs().sum() > 0  # the encoder learns through FSQ


def test_vae_space_model_and_repa_features(images):
    tok = vtok.create("flextok-tiny-vae", repa_dim=32).train()
    out = tok(images)
    assert out["repa_features"].shape == (3, tok.grid**2, 32)
    tok.eval()
    ids = tok.encode(images, num_tokens=2)
    assert tok.decode(ids, steps=2, generator=torch.Generator().manual_seed(0)).shape == images.shape
    assert not any(p.requires_grad for p in tok.vae.parameters())


def test_official_sizes_and_bad_input():
    counts = {n: sum(p.numel() for n_, p in vtok.create(n).named_parameters() if not n_.startswith("vae."))
              for n in ["flextok-d12-d12"]}
    assert counts["flextok-d12-d12"] == pytest.approx(257.8e6, rel=0.02)  # official classes, VAE excluded
    tok = vtok.create("flextok-tiny")
    with pytest.raises(ValueError, match="num_tokens must be an int in 1..16"):
        tok.encode(torch.rand(1, 3, 32, 32), num_tokens=17)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        tok.decode(torch.zeros(1, 4, dtype=torch.long), steps=0)
    with pytest.raises(ValueError, match="nested_dropout"):
        FlexTok(image_size=32, nested_dropout="linear")
    assert sincos_2d(8, 2).shape == (4, 8)


# --- official weights: the converter against the official code on a tiny random config ------------
@pytest.fixture(scope="module")
def official():
    """(official state dict in float32, saved tensors, the matching vtok config) of the fixture."""
    data = load_file(OFFICIAL_FIXTURE)
    state = {k[len("official."):]: v.float() for k, v in data.items() if k.startswith("official.")}
    with safe_open(OFFICIAL_FIXTURE, "pt") as f:
        config = json.loads(f.metadata()["vtok_config"])
    return state, {k: v for k, v in data.items() if not k.startswith("official.")}, config


@pytest.fixture(scope="module")
def converted(official):
    state, _, config = official
    model = FlexTok(**config)
    load_state_strict(model, FlexTok.convert_official(state, model.config), OFFICIAL_FIXTURE.name)
    return model.eval()


def test_converted_official_weights_give_the_official_ids_and_velocity(converted, official):
    _, ref, _ = official
    assert torch.equal(converted.encode(ref["input"]), ref["ids"])  # official tokenize, float32
    codes = converted.quantizer.decode_ids(ref["ids"])
    with torch.no_grad():  # one decoder call: image 0 keeps all 16 registers, image 1 the first 5
        v = converted.velocity(ref["z_t"], ref["t"], converted.condition(codes, keep=ref["keep"]))
        v_null = converted.velocity(ref["z_t"], ref["t"], converted.condition(codes, keep=ref["keep"], null=torch.tensor([True, False])))
    assert ref["velocity"].std() > 0.5 and not torch.allclose(ref["velocity"][0], ref["velocity_null"][0], atol=1e-2)
    torch.testing.assert_close(v, ref["velocity"], atol=1e-5, rtol=0)
    torch.testing.assert_close(v_null, ref["velocity_null"], atol=1e-5, rtol=0)


def test_decode_matches_official_detokenize(converted, official):
    """Official detokenize of 6 ids: 3 Euler steps, CFG 2.0, then the VAE decoder (its images in [-1, 1])."""
    _, ref, _ = official
    got = converted.decode(ref["ids"][:, :6], steps=3, guidance=2.0, noise=ref["decode_noise"])
    torch.testing.assert_close(got, ((ref["decoded"] + 1) / 2).clamp(0, 1), atol=1e-4, rtol=0)


def test_official_entries_load_through_the_converter(official, tmp_path, monkeypatch):
    """vtok.load(<name>) / vtok.load(<official repo>) read the official safetensors from the HF cache and convert them."""
    from vtok import hub, registry

    assert hub.official_entry("EPFL-VILAB/flextok_d18_d28_in1k") == "flextok-d18-d28"
    state, ref, config = official
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    monkeypatch.setitem(registry.MODELS, "flextok-official-tiny",
                        registry.ModelEntry("flextok-official-tiny", FlexTok, config, official="org/flextok-tiny"))
    monkeypatch.setattr(hub, "_hub_file", lambda repo, filename, **kw: path if (repo, filename) == ("org/flextok-tiny", "model.safetensors") else None)
    for source in ("flextok-official-tiny", "org/flextok-tiny"):
        assert torch.equal(vtok.load(source).encode(ref["input"], num_tokens=4), ref["ids"][:, :4])


@pytest.mark.parametrize("name", ["flextok-d12-d12", "flextok-d18-d18", "flextok-d18-d28"])
def test_official_sizes_convert_onto_the_registry_entries(name, monkeypatch):
    """The official modules at the released sizes (key / shape list, fixtures/flextok/official_shapes.json)
    convert onto exactly the registry entry's state dict."""
    from vtok.image import flextok

    shapes = json.loads((OFFICIAL_FIXTURE.parent / "official_shapes.json").read_text())["shapes"][name]
    entry = vtok.registry.get_entry(name)
    build = flextok.quantizers.build

    def build_on_cpu(*args, **kwargs):  # the FSQ library computes its codebook with .item() calls
        with torch.device("cpu"):
            return build(*args, **kwargs)

    monkeypatch.setattr(flextok.quantizers, "build", build_on_cpu)
    with torch.device("meta"):
        model = entry.cls(**entry.config)
        state = entry.cls.convert_official({k: torch.empty(s) for k, s in shapes.items()}, entry.config)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == ours
    sincos = ("encoder.module_dict.enc_posemb_module.posembs", "decoder.module_dict.dec_patches_posemb_module.posembs")
    official = sum(math.prod(s) for k, s in shapes.items() if not k.startswith("vae.") and k not in sincos)
    assert sum(p.numel() for k, p in model.named_parameters() if not k.startswith("vae.")) == official  # VAE excluded
