"""FlexTok: ordered registers -> FSQ ids, nested dropout, a rectified-flow decoder sampled with diffusers' Euler scheduler."""
import pytest
import torch

import vtok
from vtok import assets
from vtok.image.flextok import FlexTok, sincos_2d


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
