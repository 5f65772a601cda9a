"""TiTok and One-D-Piece: official-weight converter against fixtures from the official code, sizes, API."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vtok
from vtok.hub import load_state_strict
from vtok.image.titok import TiTok, VQ8K_QUANTIZER

FIXTURES = Path(__file__).parent / "fixtures" / "titok"
L2_QUANTIZER = {**VQ8K_QUANTIZER, "codebook_size": 256}


def fixture(name: str) -> tuple[dict, dict]:
    """(official state dict in float32, tensors saved beside it) of a fixture file."""
    data = load_file(FIXTURES / name)
    state = {k[len("state."):]: v.float() for k, v in data.items() if k.startswith("state.")}
    return state, {k: v for k, v in data.items() if not k.startswith("state.")}


def converted(name: str, fixture_file: str, **overrides) -> TiTok:
    state, _ = fixture(fixture_file)
    model = vtok.create(name, **overrides)
    load_state_strict(model, type(model).convert_official(state, model.config), fixture_file)
    return model.eval()


@pytest.mark.parametrize(
    "name,fixture_file,overrides",
    [
        ("titok-tiny-legacy", "titok_legacy_tiny.safetensors", {}),  # two-stage: proxy-code head + VQGAN decoder
        ("titok-tiny", "titok_pixels_tiny.safetensors", {"quantizer": L2_QUANTIZER}),  # single-stage (BL/SL VQ)
        ("onedpiece-tiny", "titok_legacy_tiny.safetensors", {"legacy": True, "proxy": vtok.registry.MODELS["titok-tiny-legacy"].config["proxy"]}),
    ],
)
def test_converted_official_weights_reproduce_official_outputs(name, fixture_file, overrides):
    model = converted(name, fixture_file, **overrides)
    _, ref = fixture(fixture_file)
    ids = model.encode(ref["input"])  # float32, as the official encode ran
    assert torch.equal(ids, ref["ids"])
    # float32 decode: as close as two float32 programs with different op orders get
    torch.testing.assert_close(model.decode(ids).double(), ref["recon"].clamp(0, 1), atol=1e-4, rtol=0)
    model.double()  # the official decode ran in float64 too: what is left is the mapping, not rounding
    recon = model.decode_latents(model.quantizer.decode_ids(ids))
    torch.testing.assert_close(recon, ref["recon"], atol=1e-5, rtol=0)


def test_onedpiece_prefix_decoding_matches_official():
    model = converted("onedpiece-tiny", "titok_legacy_tiny.safetensors", legacy=True,
                      proxy=vtok.registry.MODELS["titok-tiny-legacy"].config["proxy"])
    ref = load_file(FIXTURES / "onedpiece_tiny_outputs.safetensors")
    ids = model.encode(ref["input"], num_tokens=5)
    assert torch.equal(ids, ref["ids"][:, :5])
    model.double()
    torch.testing.assert_close(model.decode_latents(model.quantizer.decode_ids(ids)), ref["recon_prefix5"], atol=1e-5, rtol=0)


def test_load_official_goes_through_the_converter(tmp_path, monkeypatch):
    """vtok.load(<official name>) reads the official safetensors from the HF cache and converts them."""
    from vtok import hub, registry

    state, ref = fixture("titok_legacy_tiny.safetensors")
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    entry = registry.MODELS["titok-tiny-legacy"]
    monkeypatch.setitem(registry.MODELS, "titok-tiny-legacy", registry.ModelEntry(**{**entry.__dict__, "official": "org/titok-tiny"}))
    monkeypatch.setattr(hub, "_hub_file", lambda repo, filename, **kw: path if (repo, filename) == ("org/titok-tiny", "model.safetensors") else None)
    for source in ("titok-tiny-legacy", "org/titok-tiny"):
        assert torch.equal(vtok.load(source).encode(ref["input"]), ref["ids"])


# --- sizes: the paper-scale entries have the official models' parameter counts ----------------
OFFICIAL_PARAMS = {  # the official TiTok modules built from their configs (random weights)
    "titok-l-32": 641_054_735,
    "titok-b-64": 204_814_095,
    "titok-s-128": 83_674_639,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_paper_sizes(name):
    with torch.device("meta"):
        model = vtok.create(name)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


def test_onedpiece_entries_follow_the_releases():
    assert vtok.list_models("onedpiece-*-256") == ["onedpiece-b-256", "onedpiece-l-256", "onedpiece-s-256"]
    entry = vtok.registry.get_entry("onedpiece-l-256")
    assert entry.official == "turing-motors/One-D-Piece-L-256"
    assert entry.config["num_tokens"] == 256 and entry.config["encoder"] == "large"


# --- API ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["titok-tiny", "titok-tiny-legacy", "onedpiece-tiny"])
def test_round_trip_shapes_and_training_step(name):
    torch.manual_seed(0)
    model = vtok.create(name)
    x = torch.rand(2, 3, 32, 32)
    ids = model.encode(x)
    assert ids.shape == (2, 16) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < model.vocab_size
    y = model.decode(ids)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    model.train()
    proxy = torch.randint(0, 1024, (2, 64)) if model.legacy else None
    out = model(x, proxy_codes=proxy)
    loss = (out["x_hat"] - x).abs().mean() + out["loss"] + out.get("aux_loss", 0.0)
    loss.backward()
    assert model.latent_tokens.grad is not None and model.quantizer.vq.codebook is not None


def test_onedpiece_any_prefix():
    torch.manual_seed(0)
    model = vtok.create("onedpiece-tiny").eval()
    x = torch.rand(1, 3, 32, 32)
    full = model.encode(x)
    for k in (1, 7, 16):
        ids = model.encode(x, num_tokens=k)
        assert torch.equal(ids, full[:, :k])
        assert model.decode(ids).shape == (1, 3, 32, 32)


def test_tail_token_drop_draws_lengths_in_training():
    torch.manual_seed(0)
    model = vtok.create("onedpiece-tiny").train()
    z = torch.randn(2, 16, 8)
    lengths = {model.drop_tail(z).shape[1] for _ in range(200)}
    assert min(lengths) == 1 and max(lengths) == 16 and len(lengths) == 16
    assert model.eval().drop_tail(z).shape[1] == 16


@pytest.mark.parametrize(
    "name,call,match",
    [
        ("titok-tiny", lambda m: m.encode(torch.rand(1, 3, 64, 64)), "32, 32"),
        ("titok-tiny", lambda m: m.encode(torch.rand(1, 1, 32, 32)), "3, 32, 32"),
        ("titok-tiny", lambda m: m.encode(torch.rand(1, 3, 32, 32) * 2), r"\[0, 1\]"),
        ("titok-tiny", lambda m: m.encode(torch.rand(1, 3, 32, 32), num_tokens=8), "fixed-length"),
        ("titok-tiny", lambda m: m.decode(torch.zeros(1, 8, dtype=torch.long)), "fixed-length"),
        ("titok-tiny", lambda m: m.decode(torch.full((1, 16), 256)), r"\[0, 256\)"),
        ("onedpiece-tiny", lambda m: m.encode(torch.rand(1, 3, 32, 32), num_tokens=0), "1..16"),
        ("onedpiece-tiny", lambda m: m.encode(torch.rand(1, 3, 32, 32), num_tokens=17), "1..16"),
        ("onedpiece-tiny", lambda m: m.decode(torch.zeros(1, 17, dtype=torch.long)), "1..16"),
    ],
)
def test_bad_input(name, call, match):
    with pytest.raises(ValueError, match=match):
        call(vtok.create(name))


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"patch_size": 5}, "multiple of patch_size"),
        ({"encoder": "huge"}, "unknown ViT size"),
        ({"decoder": {"width": 30, "depth": 1, "heads": 4}}, "divisible"),
        ({"quantizer": {"kind": "vq", "codebook_size": 16, "dim": 3}}, "dim == token_dim"),
        ({"legacy": True, "proxy": {"codebook_size": 16, "latent_dim": 8, "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1}}, "upsample by patch_size"),
    ],
)
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        vtok.create("titok-tiny", **overrides)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = vtok.create("onedpiece-tiny").eval()
    model.save_pretrained(tmp_path / "odp")
    again = vtok.load(tmp_path / "odp")
    x = torch.rand(1, 3, 32, 32)
    assert type(again).__name__ == "OneDPiece" and torch.equal(again.encode(x), model.encode(x))
