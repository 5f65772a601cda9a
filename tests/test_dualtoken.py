"""DualToken (vtok/image/dualtoken.py): two residual vocabularies from one SigLIP, teacher, official weights."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vtok
from vtok.hub import HubUnavailableError
from vtok.image.dualtoken import DualToken, SharedResidualVQ

FIXTURE = Path(__file__).parent / "fixtures" / "dualtoken" / "dualtoken_siglip_tiny.safetensors"


def images(n: int = 2, size: int = 32) -> torch.Tensor:
    return vtok.assets.sample_crops(n, size, seed=0)


@pytest.fixture(scope="module")
def tiny() -> DualToken:
    torch.manual_seed(0)
    return vtok.create("dualtoken-tiny").eval()


# --- shapes, ranges, errors -----------------------------------------------------------------------
@torch.no_grad()
def test_encode_decode_semantic_features_shapes(tiny):
    x = images()
    ids = tiny.encode(x)
    assert tiny.num_tokens == 16 and tiny.num_codebooks == 6 and tiny.vocab_size == 64 and tiny.bits_per_image == 16 * 6 * 6
    assert ids.shape == (2, 2, 16, 3) and ids.dtype == torch.long and 0 <= int(ids.min()) and int(ids.max()) < 64
    y = tiny.decode(ids)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert tiny.semantic_features(ids).shape == (2, 16, 8)  # the semantic codes summed over the depths
    per_depth = tiny.semantic_features(ids, per_depth=True)
    assert per_depth.shape == (2, 16, 3, 8) and torch.allclose(per_depth.sum(2), tiny.semantic_features(ids), atol=1e-6)
    assert tiny.decode_semantic(ids).shape == (2, 16, 32)  # the teacher's width
    # the first depths alone decode (coarser)
    assert tiny.decode(ids[..., :1]).shape == x.shape and tiny.semantic_features(ids[..., :2]).shape == (2, 16, 8)


def test_bad_inputs_say_what_was_expected(tiny):
    with pytest.raises(ValueError, match=r"expected shape \(B, 3, 32, 32\), got \(2, 3, 16, 16\)"):
        tiny.encode(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected values in \[0, 1\]"):
        tiny.encode(torch.rand(2, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match="fixed-length tokenizer of 16 tokens"):
        tiny.encode(images(), num_tokens=5)
    layout = r"expected an integer tensor \(B, 2, 16, q\) with 1 <= q <= 3 \(\[:, 0\] pixel ids, \[:, 1\] semantic ids\)"
    with pytest.raises(ValueError, match=layout + r", got shape \(2, 16, 3\)"):
        tiny.decode(torch.zeros(2, 16, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=layout + r", got shape \(2, 2, 16, 4\)"):
        tiny.semantic_features(torch.zeros(2, 2, 16, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=layout + ", got dtype torch.float32"):
        tiny.decode(torch.zeros(2, 2, 16, 3))
    with pytest.raises(ValueError, match=r"expected values in \[0, 64\)"):
        tiny.decode(torch.full((2, 2, 16, 3), 64))
    with pytest.raises(ValueError, match="semantic_layer <= 4"):
        vtok.create("dualtoken-tiny", semantic_layer=5)
    with pytest.raises(ValueError, match="teacher must be a dict"):
        vtok.create("dualtoken-tiny", teacher={"kind": "clip"})
    with pytest.raises(ValueError, match="decoder_grid"):
        vtok.create("dualtoken-tiny", decoder_grid=8)


@torch.no_grad()
def test_each_vocabulary_decodes_from_its_own_ids(tiny):
    ids = tiny.encode(images())
    other = ids.clone()
    other[:, 1] = (other[:, 1] + 1) % 64  # other semantic ids: the image is unchanged
    assert torch.equal(tiny.decode(other), tiny.decode(ids))
    assert not torch.equal(tiny.semantic_features(other), tiny.semantic_features(ids))
    other = ids.clone()
    other[:, 0] = (other[:, 0] + 1) % 64  # other pixel ids: the semantic features are unchanged
    assert torch.equal(tiny.semantic_features(other), tiny.semantic_features(ids))
    assert not torch.equal(tiny.decode(other), tiny.decode(ids))
    # semantic features are the semantic codebook's codes, summed over the depths
    expected = tiny.quantizer_sem.codebook[ids[:, 1]].sum(2)
    assert torch.equal(tiny.semantic_features(ids), expected)


# --- training ---------------------------------------------------------------------------------------
def test_forward_gives_what_training_needs():
    torch.manual_seed(0)
    tok = vtok.create("dualtoken-tiny").train()
    x = images()
    before = tok.quantizer_sem.codebook.clone()
    ids = tok.encode(x)  # encoding never updates the codebooks, whatever the mode
    assert torch.equal(tok.quantizer_sem.codebook, before)
    out = tok(x)
    assert out["x_hat"].shape == x.shape and torch.equal(out["ids"], ids)
    assert out["semantic"].shape == out["teacher"].shape == (2, 16, 32) and out["pooled"].shape == out["teacher_pooled"].shape == (2, 32)
    for key in ("semantic_loss", "semantic_mse", "semantic_cos", "pooled_mse", "pooled_cos", "loss", "loss_pixel", "loss_semantic"):
        assert out[key].ndim == 0 and torch.isfinite(out[key]), key
    assert not torch.equal(tok.quantizer_sem.codebook, before)  # the EMA step
    (out["semantic_loss"] + out["loss"] + out["x_hat"].mean()).backward()
    for module in (tok.prequant_pix, tok.prequant_sem, tok.prequant_shortcut, tok.postquant_sem, tok.decoder, tok.vit.embeddings):
        assert all(p.grad is not None for p in module.parameters())
    # the frozen teacher: outside the state dict, no gradients, and the start of our ViT
    assert not any("teacher" in k for k in tok.state_dict())
    assert not any(p.requires_grad for p in tok.teacher().parameters())
    tok.init_from_teacher()
    assert all(torch.equal(v, tok.teacher().state_dict()[k]) for k, v in tok.vit.state_dict().items())


def test_missing_teacher_says_what_to_provide(tmp_path):
    teacher = {**vtok.registry.MODELS["dualtoken-tiny"].config["teacher"], "source": str(tmp_path / "siglip")}
    tok = vtok.create("dualtoken-tiny", teacher=teacher)  # creating needs no teacher
    with pytest.raises(HubUnavailableError, match=r"dualtoken: the directory .*siglip' does not exist.*SiglipVisionModel"):
        tok(images())


# --- save / load ----------------------------------------------------------------------------------
def test_save_load_round_trip(tiny, tmp_path):
    x = images()
    tiny.save_pretrained(tmp_path / "tok")
    loaded = vtok.load(tmp_path / "tok")
    assert type(loaded) is DualToken and loaded.config == tiny.config and not loaded.training
    ids = tiny.encode(x)
    assert torch.equal(loaded.encode(x), ids)
    assert torch.equal(loaded.decode(ids), tiny.decode(ids))
    assert torch.equal(loaded.semantic_features(ids), tiny.semantic_features(ids))
    keys = load_file(str(tmp_path / "tok" / "model.safetensors"))
    assert "quantizer_sem.codebook" in keys and not any("teacher" in k for k in keys)


# --- the zoo: official sizes ----------------------------------------------------------------------
# (ours, official): the official RQVAESiglipModel (songweii/DualToken modeling_rqvaesiglip.py) built on the meta
# device from model_config_siglip_{384_rvq8,256_rvq4}, SiglipModel.from_pretrained swapped for its architecture,
# without the SigLIP text tower and logit scale/bias (707,782,898 more; the tokenizer never uses them). The
# difference is the two EMA codebooks (16385 x 32 each, with a padding row): frozen parameters there, buffers here.
PARAMS = {"dualtoken-siglip-so400m": (639_481_571, 640_530_211), "dualtoken-siglip-so400m-256": (639_144_035, 640_192_675)}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_paper_sizes(name):
    with torch.device("meta"):
        tok = vtok.create(name)
    ours, official = PARAMS[name]
    count = sum(p.numel() for p in tok.parameters())
    assert count == ours == official - 2 * 16385 * 32
    assert sum(b.numel() for n, b in tok.named_buffers() if n.endswith(".codebook")) == 2 * 16384 * 32
    entry = vtok.registry.get_entry(name)
    assert entry.official == "songweii/DualToken" and entry.official_file.endswith(".pt")
    assert tok.vocab_size == 16384 and (tok.num_tokens, tok.num_codebooks) == {"dualtoken-siglip-so400m": (729, 16),
                                                                                "dualtoken-siglip-so400m-256": (256, 8)}[name]


def test_official_pickle_is_not_unpickled():
    with pytest.raises(ValueError, match=r"never unpickles.*'state_dict'.*official_weights="):
        vtok.load("dualtoken-siglip-so400m")


# --- official weights: the converter against the official code's outputs --------------------------
def fixture_model() -> tuple[DualToken, dict, dict]:
    """dualtoken-tiny (the fixture's config), the official state dict and the official outputs."""
    f = load_file(str(FIXTURE))
    state = {k.removeprefix("official."): v.float() if v.is_floating_point() else v for k, v in f.items() if k.startswith("official.")}
    ref = {k.removeprefix("out."): v for k, v in f.items() if k.startswith("out.")}
    return vtok.create("dualtoken-tiny"), state, ref


def test_converter_reproduces_the_official_model():
    tok, state, ref = fixture_model()
    vtok.hub.load_state_strict(tok, DualToken.convert_official(state, tok.config), "fixture")
    tok.eval()
    x = ref["input"]
    ids = tok.encode(x)
    assert torch.equal(ids[:, 0], ref["code_pix"].flatten(1, 2)) and torch.equal(ids[:, 1], ref["code_sem"].flatten(1, 2))
    with torch.no_grad():
        torch.testing.assert_close(tok.quantizer_pix.decode_ids(ids[:, 0]), ref["z_q_pix"], atol=1e-5, rtol=0)
        torch.testing.assert_close(tok.decode(ids), ((ref["recon"] + 1) / 2).clamp(0, 1), atol=1e-5, rtol=0)
        semantic = tok.decode_semantic(ids)
        torch.testing.assert_close(semantic, ref["z_q_sem"], atol=1e-5, rtol=0)
        torch.testing.assert_close(tok.pool(semantic), ref["pooler"], atol=1e-5, rtol=0)
        torch.testing.assert_close(tok.semantic_features(ids, per_depth=True), ref["emb_sem"].flatten(1, 2), atol=0, rtol=0)
        pix, sem = tok.latents(x)
        torch.testing.assert_close(tok.quantizer_pix(pix).loss.reshape(1), ref["loss_pix"], atol=1e-6, rtol=0)
        torch.testing.assert_close(tok.quantizer_sem(sem).loss.reshape(1), ref["loss_sem"], atol=1e-6, rtol=0)


def test_ema_step_against_the_official_one():
    """One training step of the semantic quantizer (official rq_ema) on the same latents and seed: same ids,
    loss and code counts. The official codebook itself comes from the *final* residual at every depth (its
    cache holds views of a residual later changed in place); our EMA math fed that reproduces it exactly."""
    tok, state, ref = fixture_model()
    vtok.hub.load_state_strict(tok, DualToken.convert_official(state, tok.config), "fixture")
    q: SharedResidualVQ = tok.quantizer_sem.train()
    lat = ref["ema_input"].flatten(1, 2)
    torch.manual_seed(123)
    out = q(lat)
    assert torch.equal(out.ids, ref["ema_codes"].flatten(1, 2))
    torch.testing.assert_close(out.loss.reshape(1), ref["ema_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(q.cluster_size, ref["ema_cluster_size"], atol=1e-6, rtol=0)
    vtok.hub.load_state_strict(tok, DualToken.convert_official(state, tok.config), "fixture")
    final = (lat - q.lookup(out.ids)).reshape(-1, 8)
    torch.manual_seed(123)
    q.ema_update(final.repeat(3, 1), out.ids.reshape(-1, 3).t().reshape(-1))
    torch.testing.assert_close(q.codebook, ref["ema_codebook"], atol=1e-6, rtol=0)


def test_load_with_official_weights_goes_through_the_converter(tmp_path, monkeypatch):
    from vtok import registry

    tok, state, ref = fixture_model()
    path = tmp_path / "official.safetensors"
    save_file({"module." + k: v.contiguous() for k, v in state.items()}, path)  # as a DDP checkpoint's state_dict
    entry = registry.MODELS["dualtoken-tiny"]
    monkeypatch.setitem(registry.MODELS, "dualtoken-tiny", registry.ModelEntry(**{**entry.__dict__, "official": "org/dualtoken-tiny"}))
    loaded = vtok.load("dualtoken-tiny", official_weights=path)
    assert torch.equal(loaded.encode(ref["input"])[:, 0], ref["code_pix"].flatten(1, 2))
