"""The one quantizer API: round trips, gradients, bits, usage statistics, bad input."""
import math

import pytest
import torch

import vtok
from vtok.quantizers import CodeUsage, build

D = 16
CONFIGS = {
    "vq": dict(dim=D, codebook_size=64),
    "vq-cosine-kmeans": dict(dim=D, codebook_size=64, distance="cosine", kmeans_init=True, dead_code_threshold=1.0),
    "vq-learned-cosine": dict(dim=D, codebook_size=64, ema=False, distance="cosine"),
    "vq-learned-lowdim": dict(dim=D, codebook_size=64, ema=False, codebook_dim=4, gradient="rotation"),
    "rvq": dict(dim=D, codebook_size=32, num_codebooks=4, quantizer_dropout=True),
    "grvq": dict(dim=D, codebook_size=32, num_codebooks=3, groups=2),
    "fsq": dict(dim=D, levels=[8, 5, 5, 5]),
    "lfq": dict(dim=D, codebook_size=256),
    "bsq": dict(dim=D, codebook_size=256),
    "simvq": dict(dim=D, codebook_size=64),
}
KIND = {name: name.split("-")[0] for name in CONFIGS}


def make(name):
    torch.manual_seed(0)
    return build(KIND[name], **CONFIGS[name])


def test_every_kind_is_covered():
    assert set(KIND.values()) == set(vtok.quantizers.KINDS)


@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_in_eval(name):
    q = make(name)
    q.train()
    q(torch.randn(4, 32, D))  # one training step first: EMA/kmeans updates must not break the round trip
    q.eval()
    out = q(torch.randn(3, 10, D))
    assert out.z_q.shape == (3, 10, D)
    assert out.ids.dtype == torch.long
    expected_ids = (3, 10, q.num_codebooks) if q.multi_codebook else (3, 10)
    assert out.ids.shape == expected_ids
    assert out.ids.min() >= 0 and out.ids.max() < q.codebook_size
    assert out.loss.ndim == 0
    torch.testing.assert_close(q.decode_ids(out.ids), out.z_q, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_reach_the_encoder(name):
    q = make(name).train()
    encoder = torch.nn.Linear(8, D)
    out = q(encoder(torch.randn(4, 12, 8)))
    (out.z_q.square().mean() + out.loss).backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", CONFIGS)
def test_frozen_answer_and_stats(name):
    out = make(name)(torch.randn(2, 8, D))
    with pytest.raises(Exception):
        out.ids = None
    assert set(out.stats) == {"usage", "perplexity", "dead_codes"}
    assert 0 < out.stats["usage"] <= 1


@pytest.mark.parametrize(
    "kind,cfg,bits",
    [
        ("vq", dict(dim=8, codebook_size=4096), 12.0),
        ("fsq", dict(dim=4, levels=[8, 5, 5, 5]), math.log2(1000)),
        ("fsq", dict(dim=6, levels=[8, 8, 8, 5, 5, 5]), math.log2(64000)),
        ("rvq", dict(dim=8, codebook_size=1024, num_codebooks=8), 80.0),
        ("grvq", dict(dim=8, codebook_size=1024, num_codebooks=2, groups=2), 40.0),
        ("lfq", dict(dim=18, codebook_size=2**18), 18.0),
        ("bsq", dict(dim=16, codebook_size=2**16), 16.0),
        ("simvq", dict(dim=8, codebook_size=8192), 13.0),
    ],
)
def test_bits_per_token(kind, cfg, bits):
    assert build(kind, **cfg).bits_per_token == pytest.approx(bits)


def test_rvq_decodes_any_prefix_of_levels():
    q = make("rvq").eval()
    out = q(torch.randn(2, 6, D))
    coarse = [q.decode_ids(out.ids[..., :k]) for k in range(1, 5)]
    torch.testing.assert_close(coarse[-1], out.z_q, rtol=0, atol=1e-5)
    err = [(c - out.z_q).norm().item() for c in coarse]
    assert err[0] > err[-1]


def test_rvq_dropout_marks_dropped_levels_and_stats_skip_them():
    torch.manual_seed(3)
    q = build("rvq", dim=D, codebook_size=32, num_codebooks=4, quantizer_dropout=True).train()
    seen_dropped = False
    for _ in range(20):
        out = q(torch.randn(2, 5, D))
        dropped = out.ids[0, 0] < 0
        seen_dropped |= bool(dropped.any())
        if dropped.any():  # a dropped level is dropped everywhere, and never a level below a kept one
            assert (out.ids[..., dropped] == -1).all()
            assert not (out.ids[..., ~dropped] < 0).any()
    assert seen_dropped
    assert torch.isfinite(out.stats["perplexity"])


def test_usage_and_perplexity_on_known_distributions():
    usage = CodeUsage(num_codebooks=1, codebook_size=256, window=10**6)
    usage.update(torch.arange(256).repeat(40)[:, None])  # uniform over all codes
    s = usage.stats()
    assert s["usage"] == 1 and s["dead_codes"] == 0
    assert s["perplexity"].item() == pytest.approx(256, rel=1e-4)

    usage.reset()
    usage.update(torch.tensor([0, 1, 2, 3] * 100)[:, None])  # uniform over 4 codes
    s = usage.stats()
    assert s["usage"].item() == pytest.approx(4 / 256)
    assert s["perplexity"].item() == pytest.approx(4, rel=1e-4)
    assert s["dead_codes"].item() == 252

    usage.reset()
    p = torch.tensor([0.5, 0.25, 0.125, 0.125])
    usage.update(torch.multinomial(p, 80000, replacement=True)[:, None])
    entropy = -(p * p.log()).sum()
    assert usage.stats()["perplexity"].item() == pytest.approx(entropy.exp().item(), rel=0.02)


def test_usage_window_forgets_old_codes():
    usage = CodeUsage(num_codebooks=1, codebook_size=16, window=100)
    usage.update(torch.zeros(100, 1, dtype=torch.long))  # a full window of code 0
    usage.update(torch.ones(50, 1, dtype=torch.long))
    assert usage.stats()["usage"].item() == pytest.approx(2 / 16)  # codes 0 and 1
    usage.update(torch.full((60, 1), 2))  # the window of 1s and 2s is full: code 0 leaves
    assert usage.counts()[0].tolist()[:3] == [0, 50, 60]
    assert usage.stats()["usage"].item() == pytest.approx(2 / 16)


def test_collapse_shows_in_stats():
    q = build("vq", dim=D, codebook_size=64).eval()
    z = q.codebook[3].expand(4, 50, D).clone()  # every vector sits on code 3
    s = q(z).stats
    assert s["perplexity"].item() == pytest.approx(1.0)
    assert s["dead_codes"].item() == 63


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(4, D), "shape"),
        (torch.randn(2, 3, 4, D), "shape"),
        (torch.randint(0, 5, (2, 3, D)), "float"),
        (torch.randn(2, 3, D + 1), "last dim"),
        (torch.randn(0, 3, D), "non-empty"),
        ([[0.0] * D], "torch.Tensor"),
    ],
)
@pytest.mark.parametrize("name", ["vq", "rvq", "fsq", "lfq"])
def test_bad_latents(name, bad, match):
    with pytest.raises(ValueError, match=match):
        make(name)(bad)


@pytest.mark.parametrize("name", ["vq", "rvq", "fsq", "simvq"])
def test_bad_ids(name):
    q = make(name).eval()
    good = q(torch.randn(1, 4, D)).ids
    with pytest.raises(ValueError, match="integer"):
        q.decode_ids(good.float())
    with pytest.raises(ValueError, match="range"):
        q.decode_ids(good + q.codebook_size)
    with pytest.raises(ValueError, match="shape"):
        q.decode_ids(good[0])
    with pytest.raises(ValueError, match="non-empty"):
        q.decode_ids(good[:, :0])


@pytest.mark.parametrize(
    "kind,cfg,match",
    [
        ("nope", dict(dim=4), "unknown quantizer kind"),
        ("lfq", dict(dim=4, codebook_size=100), "power of two"),
        ("fsq", dict(dim=4, levels=[]), "levels"),
        ("vq", dict(dim=4, codebook_size=16, distance="dot"), "distance"),
        ("vq", dict(dim=4, codebook_size=16, ema=False, distance="cosine", kmeans_init=True), "kmeans_init"),
        ("grvq", dict(dim=5, codebook_size=16, num_codebooks=2, groups=2), "divisible"),
        ("vq", dict(dim=4), "codebook_size"),
        ("vq", dict(dim=4, codebook_size=16, colour="red"), "colour"),
    ],
)
def test_bad_config(kind, cfg, match):
    with pytest.raises(ValueError, match=match):
        build(kind, **cfg)


def test_bf16_input_gives_bf16_output():
    q = make("vq").eval()
    out = q(torch.randn(2, 5, D, dtype=torch.bfloat16))
    assert out.z_q.dtype == torch.bfloat16


def test_inference_block_leaves_codebook_and_mode_alone():
    q = make("rvq").train()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    with q.inference():
        ids = q(torch.randn(2, 8, D)).ids
    assert q.training and (ids >= 0).all()  # no level dropped
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_stats_describe_the_window_when_taken_even_if_read_later():
    usage = CodeUsage(num_codebooks=1, codebook_size=8, window=10**6)
    usage.update(torch.zeros(10, 1, dtype=torch.long))
    early = usage.stats()  # not read yet
    usage.update(torch.arange(8)[:, None])
    late = usage.stats()
    usage.reset()
    assert early["usage"].item() == pytest.approx(1 / 8)
    assert late["usage"].item() == 1.0
    assert late["usage"] is late["usage"]  # computed once, then fixed


def test_learned_cosine_codebook_quantizes_in_float32_under_autocast():
    q = make("vq-learned-cosine").eval()
    z = torch.randn(2, 64, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ids = q(z).ids
    assert torch.equal(ids, q(z).ids)
