"""TokenFlow (vtok/image/dualcodebook.py): shared-mapping dual codebook, multi-scale ids, teacher, official weights."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vtok
from vtok.hub import HubUnavailableError
from vtok.image.dualcodebook import DualCodebook, TokenFlow, load_teacher, teacher_spec, tower_features, vision_tower

FIXTURE = Path(__file__).parent / "fixtures" / "tokenflow" / "tokenflow_clip_tiny.safetensors"


def images(n: int = 2, size: int = 32) -> torch.Tensor:
    return vtok.assets.sample_crops(n, size, seed=0)


@pytest.fixture(scope="module")
def tiny() -> TokenFlow:
    torch.manual_seed(0)
    return vtok.create("tokenflow-tiny").eval()


# --- shapes, ranges, errors -----------------------------------------------------------------------
@torch.no_grad()
def test_encode_decode_semantic_features_shapes(tiny):
    x = images()
    ids = tiny.encode(x)
    assert tiny.scales == [1, 2, 4] and tiny.num_tokens == 1 + 4 + 16 == 21 and tiny.vocab_size == 128
    assert ids.shape == (2, 21) and ids.dtype == torch.long and 0 <= int(ids.min()) and int(ids.max()) < 128
    y = tiny.decode(ids)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    sem = tiny.semantic_features(ids)
    assert sem.shape == (2, 16, 8)  # G*G tokens of the semantic codebook (semantic_dim 8)
    assert tiny.semantic_features(ids, with_pixel=True).shape == (2, 16, 12)
    assert tiny.decode_semantic(ids).shape == (2, 16, 16)  # the teacher's projected feature size
    # the first scales alone: encode(num_tokens=5) is a prefix, and decodes
    assert torch.equal(tiny.encode(x, num_tokens=5), ids[:, :5])
    assert tiny.decode(ids[:, :5]).shape == x.shape and tiny.semantic_features(ids[:, :1]).shape == (2, 16, 8)


def test_bad_inputs_say_what_was_expected(tiny):
    with pytest.raises(ValueError, match=r"expected shape \(B, 3, 32, 32\), got \(2, 3, 16, 16\)"):
        tiny.encode(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected values in \[0, 1\]"):
        tiny.encode(torch.rand(2, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match=r"num_tokens must be one of \[1, 5, 21\]"):
        tiny.encode(images(), num_tokens=7)
    with pytest.raises(ValueError, match=r"expected shape \(B, n\) with n one of \[1, 5, 21\].*got \(2, 7\)"):
        tiny.decode(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected values in \[0, 128\)"):
        tiny.decode(torch.full((2, 21), 128))
    with pytest.raises(ValueError, match="integer"):
        tiny.semantic_features(torch.zeros(2, 21))
    with pytest.raises(ValueError, match=r"expected an integer tensor \(B, 21\)"):
        tiny.decode(torch.zeros(21, dtype=torch.long))
    with pytest.raises(ValueError, match="teacher must be a dict"):
        vtok.create("tokenflow-tiny", teacher={"kind": "dino", "config": {}})
    with pytest.raises(ValueError, match="last scale"):
        vtok.create("tokenflow-tiny", scales=[1, 2, 8])


# --- the shared mapping ---------------------------------------------------------------------------
def test_pixel_weight_decides_between_semantic_and_pixel_match():
    """Code 0 matches the semantic part exactly, code 1 the pixel part: w picks the winner."""
    z = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]])  # semantic (1, 0) | pixel (0, 1)
    chosen = {}
    for w in (0.5, 2.0):
        q = DualCodebook(2, 2, 2, pixel_weight=w).eval()
        with torch.no_grad():
            q.semantic.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # d_sem: 0 for code 0, 2 for code 1
            q.pixel.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))     # d_pix: 2 for code 0, 0 for code 1
        out = q(z)
        chosen[w] = int(out.ids)
        # one id, two codebooks: the output is the pair of codes of that id
        assert torch.allclose(out.z_q[0, 0], torch.cat([q.semantic.weight[chosen[w]], q.pixel.weight[chosen[w]]]))
    assert chosen == {0.5: 0, 2.0: 1}


def test_pixel_weight_changes_the_model_ids():
    x = images()
    ids = {}
    for w in (0.0, 100.0):
        torch.manual_seed(0)  # same weights, only w differs
        ids[w] = vtok.create("tokenflow-tiny", pixel_weight=w).eval().encode(x)
    assert not torch.equal(ids[0.0], ids[100.0])


def test_both_codebooks_decode_from_the_same_ids(tiny):
    x = images()
    ids = tiny.encode(x)
    pixels, sem = tiny.decode(ids), tiny.semantic_features(ids)
    q = tiny.quantizer.codebook
    saved = q.semantic.weight.detach().clone()
    try:
        with torch.no_grad():
            q.semantic.weight.mul_(-1)  # only the semantic codebook changes
        assert torch.equal(tiny.decode(ids), pixels)
        assert torch.allclose(tiny.semantic_features(ids), -sem, atol=1e-6)
    finally:
        with torch.no_grad():
            q.semantic.weight.copy_(saved)
    # the coarsest id alone: its semantic code, bicubic-upsampled from 1x1, is that code everywhere
    one = tiny.semantic_features(ids[:, :1])
    code = torch.nn.functional.normalize(q.semantic.weight[ids[:, 0]], dim=-1)
    assert torch.allclose(one, code[:, None].expand_as(one), atol=1e-6)


# --- training forward -----------------------------------------------------------------------------
def test_forward_gives_what_training_needs():
    torch.manual_seed(0)
    tok = vtok.create("tokenflow-tiny", scale_drop=1.0).train()
    tok.init_from_teacher()
    out = tok(images())
    assert out["x_hat"].shape == (2, 3, 32, 32)
    assert out["semantic"].shape == out["teacher"].shape == (2, 16, 16) and not out["teacher"].requires_grad
    dropped = (out["ids"] == -1).all(0)  # scale_drop=1: exactly one scale, never the first, is skipped
    sizes = [int(dropped[a:b].sum()) for a, b in zip(tok.quantizer.offsets, tok.quantizer.offsets[1:])]
    assert sizes in ([0, 4, 0], [0, 0, 16])
    for key in ("loss", "codebook_loss", "commitment_loss", "semantic_loss"):
        assert out[key].ndim == 0 and torch.isfinite(out[key])
    assert torch.allclose(out["loss"], out["codebook_loss"] + 0.25 * out["commitment_loss"])
    assert set(out["stats"]) == {"usage", "perplexity", "dead_codes"}
    (out["loss"] + out["semantic_loss"] + (out["x_hat"] - 0.5).square().mean()).backward()
    for module in (tok.semantic_encoder.encoder.layers[-1], tok.encode_head, tok.pixel_encoder, tok.quantizer,
                   tok.semantic_decoder, tok.pixel_decoder):
        assert all(p.grad is not None for p in module.parameters() if p.requires_grad), type(module).__name__


def test_teacher_is_frozen_and_outside_the_state_dict():
    torch.manual_seed(0)
    tok = vtok.create("tokenflow-tiny")
    tok.init_from_teacher()
    teacher = tok.teacher()
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    tower = vision_tower(teacher).state_dict()
    assert all(torch.equal(v, tower[k]) for k, v in tok.semantic_encoder.state_dict().items())
    assert len(tok.state_dict()) == len(vtok.create("tokenflow-tiny").state_dict())
    # targets: the teacher's patch tokens after its final LayerNorm, projected (CLIP), on CLIP-normalised input
    x = images()
    spec = teacher_spec(tok.config["teacher"])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (spec["mean"], spec["std"]))
    hf = teacher(pixel_values=(x - mean) / std)
    expected = teacher.visual_projection(vision_tower(teacher).post_layernorm(hf.last_hidden_state[:, 1:]))
    torch.testing.assert_close(tok.teacher_features(x), expected, atol=1e-5, rtol=0)


def test_missing_teacher_says_what_to_provide(tmp_path):
    source = str(tmp_path / "no-such-teacher")
    teacher = {**vtok.registry.MODELS["tokenflow-tiny"].config["teacher"], "source": source}
    tok = vtok.create("tokenflow-tiny", teacher=teacher).train()
    with pytest.raises(HubUnavailableError, match=r"directory .*no-such-teacher.* does not exist.*"
                                                  r"CLIPVisionModelWithProjection.*teacher\['source'\]"):
        tok(images())
    with pytest.raises(HubUnavailableError, match="does not exist"):
        tok.init_from_teacher()
    assert tok.encode(images()).shape == (2, 21)  # encoding needs no teacher


def test_teacher_from_the_hub_cache_or_a_directory(tmp_path, monkeypatch):
    import transformers

    spec = teacher_spec(vtok.registry.MODELS["tokenflow-tiny"].config["teacher"])
    load_teacher(spec).save_pretrained(tmp_path / "teacher")  # a local directory in transformers' format
    tok = vtok.create("tokenflow-tiny", teacher={**spec, "source": str(tmp_path / "teacher")})
    tok.init_from_teacher()
    reference = load_teacher(spec)
    assert all(torch.equal(v, vision_tower(reference).state_dict()[k]) for k, v in tok.semantic_encoder.state_dict().items())

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.CLIPVisionModelWithProjection, "from_pretrained", offline)
    tok = vtok.create("tokenflow-tiny", teacher={**spec, "source": "openai/clip-vit-base-patch16"})
    with pytest.raises(HubUnavailableError, match=r"'openai/clip-vit-base-patch16'.*hf download openai/clip-vit-base-patch16"):
        tok.init_from_teacher()


def test_siglip_teacher_path():
    """A tiny SigLIP teacher: features are hidden_states[-2] (no final norm) as the official code takes them,
    and the pixel branch runs at pixel_size (resized in and out)."""
    siglip = {"kind": "siglip", "source": None, "layer": -2, "post_norm": False, "mean": [0.5] * 3, "std": [0.5] * 3,
              "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                         "image_size": 30, "patch_size": 10}}
    torch.manual_seed(0)
    tok = vtok.create("tokenflow-tiny", image_size=30, scales=[1, 2, 3], teacher=siglip, pixel_size=24,
                      semantic_decoder={"width": 32, "depth": 1, "heads": 2, "grid": 3}).eval()
    tok.init_from_teacher()
    x = torch.rand(2, 3, 30, 30)
    teacher = tok.teacher()
    expected = teacher(pixel_values=2 * x - 1, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(tower_features(tok.semantic_encoder, "siglip", 2 * x - 1, -2, False), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(tok.teacher_features(x), expected, atol=1e-5, rtol=0)
    ids = tok.encode(x)
    assert ids.shape == (2, 14) and tok.decode(ids).shape == (2, 3, 30, 30)
    assert tok.decode_semantic(ids).shape == (2, 9, 32)
    assert not any(p.requires_grad for p in tok.semantic_encoder.encoder.layers[-1].parameters())
    assert not any(p.requires_grad for p in tok.semantic_encoder.head.parameters())


def test_encode_ignores_training_mode(tiny):
    x = images()
    expected = tiny.encode(x)
    tiny.train()
    tiny.quantizer.scale_drop = 1.0
    try:
        assert torch.equal(tiny.encode(x), expected)
    finally:
        tiny.quantizer.scale_drop = 0.1
        tiny.eval()


# --- save / load ----------------------------------------------------------------------------------
def test_save_load_round_trip(tiny, tmp_path):
    x = images()
    tiny.save_pretrained(tmp_path / "tok")
    loaded = vtok.load(tmp_path / "tok")
    assert type(loaded) is TokenFlow and loaded.config == tiny.config and not loaded.training
    ids = tiny.encode(x)
    assert torch.equal(loaded.encode(x), ids)
    assert torch.equal(loaded.decode(ids), tiny.decode(ids))
    assert torch.equal(loaded.semantic_features(ids), tiny.semantic_features(ids))
    assert not any("teacher" in k for k in load_file(str(tmp_path / "tok" / "model.safetensors")))


# --- the zoo: official sizes ----------------------------------------------------------------------
# (ours, official): the official TokenFlow class (vq_model.py) built on the meta device from its configs
# (clipb_224 + enhanced_decoder + infer_interpolate; siglip_384), pretrained loaders swapped for their
# architectures. Ours has 3 x width more: a trainable key bias in the semantic decoder's qkv (zero in the
# official attention, where it cannot change the output).
PARAMS = {"tokenflow-clipb-32k": (376_571_947, 376_569_643), "tokenflow-siglip-32k": (554_013_419, 554_009_963)}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_paper_sizes(name):
    with torch.device("meta"):
        tok = vtok.create(name)
    ours, official = PARAMS[name]
    count = sum(p.numel() for p in tok.parameters())
    assert count == ours and abs(count - official) / official < 1e-4
    entry = vtok.registry.get_entry(name)
    assert entry.official == "ByteFlow-AI/TokenFlow" and entry.official_file.endswith(".pt")
    assert tok.vocab_size == 32768 and tok.num_tokens == {"tokenflow-clipb-32k": 817, "tokenflow-siglip-32k": 2227}[name]


def test_official_pickle_is_not_unpickled():
    with pytest.raises(ValueError, match=r"never unpickles.*weights_only=True"):
        vtok.load("tokenflow-clipb-32k")


# --- official weights: the converter against the official code's outputs --------------------------
def fixture_model() -> tuple[TokenFlow, dict, dict]:
    """The vtok config of the fixture's official tiny model, its official state dict and outputs."""
    f = load_file(str(FIXTURE))
    state = {k.removeprefix("official."): v.float() for k, v in f.items() if k.startswith("official.")}
    ref = {k.removeprefix("out."): v for k, v in f.items() if k.startswith("out.")}
    cnn = {"channels": 32, "channel_mult": [1, 1, 1, 1], "num_res_blocks": 1, "z_channels": 16}
    teacher = vtok.registry.MODELS["tokenflow-tiny"].config["teacher"]
    teacher = {**teacher, "config": {**teacher["config"], "image_size": 24}}  # trained at 24 px, run at 32 (interpolated)
    config = {**vtok.registry.MODELS["tokenflow-tiny"].config, "pixel_encoder": cnn, "pixel_decoder": cnn, "teacher": teacher,
              "semantic_decoder": {"width": 32, "depth": 1, "heads": 2, "grid": 3}}
    return TokenFlow(**config), state, ref


def test_converter_reproduces_the_official_model():
    tok, state, ref = fixture_model()
    vtok.hub.load_state_strict(tok, TokenFlow.convert_official(state, tok.config), "fixture")
    tok.eval()
    ids = tok.encode(ref["input"])
    assert torch.equal(ids, ref["ids"])
    with torch.no_grad():
        torch.testing.assert_close(tok.quantize(ref["input"]).z_q, ref["final_quantize"], atol=1e-5, rtol=0)
        for n, suffix in ((21, ""), (5, "_prefix5")):
            z_sem, z_pix = tok.split_codes(tok.codes(ids[:, :n]))
            torch.testing.assert_close(tok.decode_pixels(z_pix), (ref["pixels" + suffix] + 1) / 2, atol=1e-5, rtol=0)
            torch.testing.assert_close(tok.semantic_decoder(z_sem), ref["semantic" + suffix], atol=1e-5, rtol=0)
    tok.train()
    tok.quantizer.scale_drop = 0.0
    out = tok.quantize(ref["input"])
    torch.testing.assert_close(out.codebook_loss.reshape(1), ref["vq_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(0.25 * out.commitment_loss.reshape(1), ref["commit_loss"], atol=1e-6, rtol=0)


def test_load_with_official_weights_goes_through_the_converter(tmp_path, monkeypatch):
    from vtok import registry

    tok, state, ref = fixture_model()
    path = tmp_path / "official.safetensors"
    save_file({"model." + k: v for k, v in state.items()}, path)  # as saved from a training checkpoint's dict
    entry = registry.MODELS["tokenflow-tiny"]
    monkeypatch.setitem(registry.MODELS, "tokenflow-tiny",
                        registry.ModelEntry(**{**entry.__dict__, "config": tok.config, "official": "org/tokenflow-tiny"}))
    loaded = vtok.load("tokenflow-tiny", official_weights=path)
    assert torch.equal(loaded.encode(ref["input"]), ref["ids"])


def test_siglip_keys_with_or_without_the_vision_model_infix():
    """Checkpoints saved under transformers 4 name the SigLIP tower encoder_vqkd.vision_model.*; 5 drops the infix."""
    config = vtok.registry.MODELS["tokenflow-siglip-32k"].config
    w = torch.zeros(1)
    for key in ("encoder_vqkd.vision_model.encoder.layers.0.mlp.fc1.weight", "encoder_vqkd.encoder.layers.0.mlp.fc1.weight"):
        assert list(TokenFlow.convert_official({key: w, "scaling_layer.shift": w}, config)) == [
            "semantic_encoder.encoder.layers.0.mlp.fc1.weight"]


def test_random_teacher_is_seeded():
    spec = teacher_spec(vtok.registry.MODELS["tokenflow-tiny"].config["teacher"])
    a, b = load_teacher(spec), load_teacher(spec)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
