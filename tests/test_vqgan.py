"""MaskGIT VQGAN: shapes, ranges, gradients, input checks, config, and the paper-scale layout."""
from __future__ import annotations

import json

import pytest
import torch

import vtok
from vtok.image.vqgan import VQGAN


@pytest.fixture(scope="module")
def tiny() -> VQGAN:
    torch.manual_seed(0)
    return vtok.create("vqgan-tiny").eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_registered() -> None:
    assert {"maskgit-vqgan", "vqgan-tiny"} <= set(vtok.list_models("*vqgan*"))


def test_encode_decode_shapes_and_ranges(tiny: VQGAN, images: torch.Tensor) -> None:
    assert (tiny.grid, tiny.num_tokens, tiny.vocab_size) == (8, 64, 256)
    ids = tiny.encode(images)
    assert ids.shape == (2, 64) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < tiny.vocab_size
    with torch.no_grad():
        x_hat = tiny.decode(ids)
    assert x_hat.shape == (2, 3, 32, 32) and x_hat.dtype == torch.float32
    assert 0.0 <= float(x_hat.min()) and float(x_hat.max()) <= 1.0


def test_decode_of_encode_matches_forward_in_eval(tiny: VQGAN, images: torch.Tensor) -> None:
    with torch.no_grad():
        out = tiny(images)
        assert torch.equal(out["ids"], tiny.encode(images))
        torch.testing.assert_close(tiny.decode(out["ids"]), out["x_hat"].clamp(0, 1))


def test_ids_are_row_major_over_the_grid(tiny: VQGAN, images: torch.Tensor) -> None:
    # id n is the code of latent cell (n // grid, n % grid)
    with torch.no_grad():
        z = tiny.encoder(images)
        ids_from_grid = tiny.quantizer(z.flatten(2).transpose(1, 2)).ids.view(2, tiny.grid, tiny.grid)
        assert torch.equal(ids_from_grid.flatten(1), tiny.encode(images))


def test_gradients_reach_encoder(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    tok = vtok.create("vqgan-tiny").train()
    out = tok(images)
    assert out["x_hat"].shape == images.shape and out["loss"].ndim == 0
    ((out["x_hat"] - images) ** 2).mean().add(out["loss"]).backward()
    for module in (tok.encoder.conv_in, tok.encoder.conv_out, tok.decoder.conv_in, tok.decoder.conv_out):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(2, 3, 16, 16), r"expected shape \(B, 3, 32, 32\)"),
        (torch.rand(2, 3, 32, 32) * 2, r"expected values in \[0, 1\]"),
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "float"),
        (torch.rand(3, 32, 32), "expected shape"),
    ],
)
def test_bad_images_raise(tiny: VQGAN, x: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.encode(x)


@pytest.mark.parametrize(
    "ids, match",
    [
        (torch.zeros(2, 63, dtype=torch.long), r"expected shape \(B, 64\).*got \(2, 63\)"),
        (torch.zeros(2, 64), "integer dtype"),
        (torch.full((2, 64), 256), r"values in \[0, 256\)"),
        (torch.zeros(2, 8, 8, dtype=torch.long), "expected shape"),
    ],
)
def test_bad_ids_raise(tiny: VQGAN, ids: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.decode(ids)


def test_num_tokens_is_fixed(tiny: VQGAN, images: torch.Tensor) -> None:
    assert tiny.encode(images, num_tokens=64).shape == (2, 64)
    with pytest.raises(ValueError, match="fixed-length"):
        tiny.encode(images, num_tokens=32)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"image_size": 30}, "multiple of 4"),
        ({"quantizer": {"kind": "vq", "codebook_size": 256, "dim": 8}}, "must equal latent_dim"),
        ({"quantizer": {"kind": "rvq", "codebook_size": 256, "num_codebooks": 2}}, "single-codebook"),
        ({"channel_mult": []}, "non-empty channel_mult"),
    ],
)
def test_bad_config_raises(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vtok.create("vqgan-tiny", **overrides)


def test_config_is_plain_json_and_complete(tiny: VQGAN) -> None:
    assert json.loads(json.dumps(tiny.config)) == tiny.config
    assert set(tiny.config) == {"image_size", "channels", "channel_mult", "num_res_blocks", "latent_dim", "quantizer"}
    assert VQGAN(**tiny.config).config == tiny.config
    with torch.device("meta"):
        assert VQGAN(image_size=64).config["quantizer"] == {"kind": "vq", "codebook_size": 1024}


def test_other_quantizer_kinds_fit(images: torch.Tensor) -> None:
    tok = vtok.create("vqgan-tiny", quantizer={"kind": "fsq", "levels": [8, 5, 5, 5]}).eval()
    ids = tok.encode(images)
    assert tok.vocab_size == 1000 and ids.shape == (2, 64) and int(ids.max()) < 1000
    assert tok.decode(ids).shape == images.shape


def test_paper_scale_layout_and_size() -> None:
    with torch.device("meta"):
        tok = vtok.create("maskgit-vqgan")
        z = tok.encoder(torch.empty(1, 3, 256, 256))
    assert (tok.grid, tok.num_tokens, tok.vocab_size) == (16, 256, 1024)
    assert z.shape == (1, 256, 16, 16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # the layout of the released MaskGIT VQGAN that TiTok decodes through (its decoder is 30.48M)
    assert (count(tok.encoder), count(tok.decoder)) == (23_775_104, 30_478_339)
    sd = tok.state_dict()
    assert sd["encoder.down.2.block.0.nin_shortcut.weight"].shape == (256, 256, 1, 1)
    assert sd["decoder.up.1.upsample_conv.weight"].shape == (128, 128, 3, 3)
    assert "decoder.up.0.upsample_conv.weight" not in sd and "encoder.mid.1.conv2.weight" in sd


def test_paper_scale_encodes_256_tokens() -> None:
    torch.manual_seed(0)
    tok = vtok.create("maskgit-vqgan").eval()
    with torch.no_grad():
        ids = tok.encode(torch.rand(1, 3, 256, 256))
    assert ids.shape == (1, 256) and int(ids.max()) < 1024


def test_save_load_round_trip(tiny: VQGAN, images: torch.Tensor, tmp_path) -> None:
    tiny.save_pretrained(tmp_path)
    loaded = vtok.load(tmp_path).eval()
    assert isinstance(loaded, VQGAN) and loaded.config == tiny.config
    assert torch.equal(loaded.encode(images), tiny.encode(images))


def test_official_layout_converts_and_pickled_release_is_explained(tiny: VQGAN, images: torch.Tensor, tmp_path, monkeypatch) -> None:
    """The official MaskGIT VQGAN keys (quantize.embedding.weight) load through convert_official."""
    from safetensors.torch import save_file

    from vtok import registry

    with pytest.raises(ValueError, match=r"pickle.*weights_only=True.*official_weights="):
        vtok.load("maskgit-vqgan")  # the release is a .bin: explained, never unpickled
    state = {k: v for k, v in tiny.state_dict().items() if k.startswith(("encoder.", "decoder."))}
    state["quantize.embedding.weight"] = tiny.quantizer.codebook.detach().clone()
    save_file(state, tmp_path / "official.safetensors")
    entry = registry.MODELS["vqgan-tiny"]
    monkeypatch.setitem(registry.MODELS, "vqgan-tiny", registry.ModelEntry(**{**entry.__dict__, "official": "org/vqgan"}))
    converted = vtok.load("vqgan-tiny", official_weights=tmp_path / "official.safetensors")
    assert torch.equal(converted.encode(images), tiny.encode(images))
    assert torch.equal(converted.decode(tiny.encode(images)), tiny.decode(tiny.encode(images)))
