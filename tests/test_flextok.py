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


# --- REPA in FlexTokTraining: a tiny random DINOv2 teacher ------------------------------------------
TINY_DINOV2 = {"kind": "dinov2", "source": None, "seed": 0,
               "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2,
                          "patch_size": 4, "image_size": 32}}


def repa_training(**kwargs):
    from vtok.train import FlexTokTraining

    torch.manual_seed(0)
    return FlexTokTraining("flextok-tiny", **{"overrides": {"repa_dim": 32}, "repa_teacher": TINY_DINOV2, **kwargs})


def test_repa_loss_trains_projector_and_decoder_not_the_teacher(images):
    module = repa_training()
    teacher = module.repa.module
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert not any(p is q for p in module.parameters() for q in teacher.parameters())  # not in the optimizer
    assert module.repa_image_size == 8 * 4  # decoder grid 8 x teacher patch 4: one teacher patch per token
    feats = module.teacher_features(images)
    assert feats.shape == (3, 64, 32)
    # the target: the teacher's patch tokens after its final LayerNorm, on ImageNet-normalised input
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = teacher(pixel_values=(images - mean) / std).last_hidden_state[:, 1:]
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=0)
    out = module.model.train()(images)
    loss = module.repa_loss(out["repa_features"], images)
    assert torch.isfinite(loss) and -1 <= loss.item() <= 1
    loss.backward()  # the REPA loss alone
    model = module.model
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.repa_projector.parameters())
    # the decoder's input and blocks up to repa_layer = 1 (AdaLN-zero: at init only the modulations, the gates
    # being 0, get a gradient through the identity blocks)
    assert model.dec_patch_emb.weight.grad.abs().sum() > 0
    assert all(block.adaLN_modulation[1].weight.grad.abs().sum() > 0 for block in model.decoder[:2])
    assert model.to_patches.weight.grad is None and all(p.grad is None for p in teacher.parameters())
    # a teacher at another resolution: its features are interpolated to the decoder grid
    other = repa_training(repa_teacher={**TINY_DINOV2, "image_size": 16})
    assert other.teacher_features(images).shape == (3, 64, 32)


def test_repa_training_step_logs_and_keeps_the_teacher_out_of_ema_and_export(images, tmp_path):
    import lightning as L
    from safetensors.torch import load_file as load_weights

    from vtok.train import WeightEMA

    module = repa_training(export_dir=str(tmp_path / "export"), val_tokens=[1, 16], val_steps=1)
    ema = WeightEMA(decay=0.9)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[ema], limit_val_batches=1, num_sanity_val_steps=0)
    data = torch.utils.data.DataLoader(images, batch_size=3)
    trainer.fit(module, data, data)
    logged = trainer.logged_metrics
    assert torch.isfinite(logged["train/repa"]) and torch.isfinite(logged["train/flow"])
    assert logged["train/loss"].item() == pytest.approx(logged["train/flow"].item() + 0.5 * logged["train/repa"].item(), rel=1e-5)
    teacher_keys = {k for k in module.repa.module.state_dict()}
    for state in (ema._average_model.state_dict(), module.state_dict(), load_weights(tmp_path / "export" / "model.safetensors")):
        assert not any("teacher" in k or "embeddings.patch_embeddings" in k or k.split(".", 1)[-1] in teacher_keys for k in state)
    assert ema._average_model.module.repa is module.repa  # shared, not copied
    assert any(k.startswith("model.repa_projector.") for k in module.state_dict())
    assert not module.repa.module.training


def test_repa_dim_must_match_the_teacher_and_a_missing_teacher_says_what_to_provide(tmp_path, monkeypatch):
    import transformers

    from vtok.hub import HubUnavailableError
    from vtok.train import FlexTokTraining

    with pytest.raises(ValueError, match=r"repa_dim \(16\) must equal the REPA teacher's hidden_size \(32\)"):
        repa_training(overrides={"repa_dim": 16})
    with pytest.raises(ValueError, match=r"repa_dim \(None\) must equal .*hidden_size \(32\)"):
        repa_training(overrides={})
    with pytest.raises(HubUnavailableError, match=r"directory .*no-such-dinov2.* does not exist.*Dinov2Model.*repa_teacher"):
        FlexTokTraining("flextok-tiny", overrides={"repa_dim": 32}, repa_teacher=str(tmp_path / "no-such-dinov2"))

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.Dinov2Model, "from_pretrained", offline)
    with pytest.raises(HubUnavailableError, match=r"'facebook/dinov2-large'.*Dinov2Model.*hf download facebook/dinov2-large"):
        FlexTokTraining("flextok-tiny", overrides={"repa_dim": 1024}, repa_teacher="facebook/dinov2-large")


def test_teacher_and_vae_from_local_directories(tmp_path):
    """repa_teacher as a transformers directory; vae_source loads a diffusers VAE's weights and its scaling_factor."""
    from diffusers import AutoencoderKL

    from vtok.train import FlexTokTraining
    from vtok.train.flextok_module import load_teacher, teacher_spec

    load_teacher(teacher_spec(TINY_DINOV2)).save_pretrained(tmp_path / "dinov2")
    vae_config = vtok.registry.get_entry("flextok-tiny-vae").config["vae"]
    torch.manual_seed(1)
    AutoencoderKL(**vae_config, scaling_factor=0.5).save_pretrained(tmp_path / "vae")
    module = FlexTokTraining("flextok-tiny-vae", overrides={"repa_dim": 32}, repa_teacher=str(tmp_path / "dinov2"),
                             vae_source=str(tmp_path / "vae"))
    reference = AutoencoderKL.from_pretrained(tmp_path / "vae")
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in module.model.vae.state_dict().items())
    assert module.model.config["latent_scale"] == 0.5
    assert module.repa_image_size == module.model.grid * 4
    assert torch.equal(module.repa.module.embeddings.patch_embeddings.projection.weight,
                       load_teacher(teacher_spec(TINY_DINOV2)).embeddings.patch_embeddings.projection.weight)
