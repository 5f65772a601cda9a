"""The compact GPT of vtok.ar and the multi-codebook layouts: KV cache = reference, causality, CFG, Hub I/O."""
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from vtok.ar import GPT, delay_deinterleave, delay_interleave, flatten_codebooks, unflatten_codebooks
from vtok.ar.gpt import KVCache

V = 37


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, block_size=48, n_layer=2, n_head=2, n_embd=32)
    return GPT(**{**cfg, **kw}).eval()


def scrambled(model: GPT) -> GPT:
    """Weights far from the small init, so greedy runs vary instead of repeating one id."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(p.numel()))
    return model


def ids(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


# --- KV cache --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["single", "class-cfg", "class-empty-prefix", "streams4"])
def test_greedy_with_cache_equals_without(case):
    labels, cfg = None, 1.0
    if case == "single":
        model, prefix = scrambled(tiny()), ids(3, 4)
    elif case == "streams4":
        model, prefix = scrambled(tiny(num_streams=4)), ids(3, 4, 2)
    else:
        model = scrambled(tiny(num_classes=5))
        prefix = ids(3, 3) if case == "class-cfg" else ids(3, 0)
        labels, cfg = torch.tensor([0, 4, 2]), 3.0
    kw = dict(labels=labels, cfg_scale=cfg, temperature=0.0)
    n = 40 - prefix.shape[-1]
    fast = model.generate(prefix, n, use_cache=True, **kw)
    slow = model.generate(prefix, n, use_cache=False, **kw)
    assert fast.shape == (*prefix.shape[:-1], prefix.shape[-1] + n) and fast.dtype == torch.long
    assert torch.equal(fast[..., : prefix.shape[-1]], prefix)
    assert torch.equal(fast, slow)
    assert len(set(fast[0, ..., prefix.shape[-1]:].flatten().tolist())) > 1  # not a degenerate constant run


def test_cache_in_chunks_matches_full_pass():
    """A cache filled in uneven chunks (multi-token queries at pos > 0) gives the full causal pass's states."""
    model, x = tiny(), ids(2, 11)
    with torch.no_grad():
        full = model._hidden(model._embed(x, None))
        cache = KVCache(2, 2, 2, 48, 16, torch.device("cpu"), torch.float32)
        parts = [model._hidden(model._embed(x[:, a:b], None), cache) for a, b in [(0, 4), (4, 5), (5, 11)]]
    assert cache.pos == 11
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_cfg_mixes_cond_and_uncond_logits():
    model, prefix, labels, s = tiny(num_classes=5), ids(3, 5), torch.tensor([1, 2, 3]), 4.0
    out = model.generate(prefix, 1, labels=labels, cfg_scale=s, temperature=0.0)
    with torch.no_grad():
        cond = model(prefix, labels)[0][:, -1]
        uncond = model(prefix, torch.full((3,), 5))[0][:, -1]
        uncond_default = model(prefix)[0][:, -1]  # labels=None -> null class
    assert torch.equal(uncond, uncond_default)
    assert torch.equal(out[:, -1], (uncond + s * (cond - uncond)).argmax(-1))


def test_sampling_knobs_and_allowed_hook():
    model, prefix = tiny(), ids(4, 2)
    greedy = model.generate(prefix, 10, temperature=0.0)
    assert torch.equal(model.generate(prefix, 10, top_k=1), greedy)
    assert torch.equal(model.generate(prefix, 10, top_p=1e-6), greedy)
    a = model.generate(prefix, 10, generator=torch.Generator().manual_seed(3))
    b = model.generate(prefix, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    steps = []

    def forbid_low(step, logits):
        steps.append(step)
        return logits.masked_fill(torch.arange(V) < 30, float("-inf"))

    out = model.generate(prefix, 10, allowed=forbid_low)
    assert steps == list(range(10)) and bool((out[:, 2:] >= 30).all())
    model.train()
    model.generate(prefix, 2)
    assert model.training  # generate runs in eval mode and puts the mode back


# --- layouts ---------------------------------------------------------------------------------
def test_delay_and_flatten_layouts_by_example():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    assert delay_interleave(codes, pad_id=9).tolist() == [[[1, 2, 3, 9], [9, 4, 5, 6]]]
    assert flatten_codebooks(codes, vocab_size=10).tolist() == [[1, 14, 2, 15, 3, 16]]


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), q=st.integers(1, 6), t=st.integers(1, 20), vocab=st.integers(1, 300), seed=st.integers(0, 2**31))
def test_layouts_round_trip(b, q, t, vocab, seed):
    codes = torch.randint(0, vocab, (b, q, t), generator=torch.Generator().manual_seed(seed))
    delayed = delay_interleave(codes, pad_id=vocab)
    assert delayed.shape == (b, q, t + q - 1)
    assert int((delayed == vocab).sum()) == b * q * (q - 1)
    assert torch.equal(delay_deinterleave(delayed), codes)
    flat = flatten_codebooks(codes, vocab)
    assert flat.shape == (b, t * q) and int(flat.max()) < q * vocab
    assert torch.equal(unflatten_codebooks(flat, q, vocab), codes)


def test_layouts_reject_bad_input():
    codes = torch.randint(0, 5, (2, 3, 4))
    for call in [
        lambda: delay_interleave(codes[0], 5),  # rank 2
        lambda: delay_interleave(codes.float(), 5),
        lambda: delay_deinterleave(codes[:, :, :2]),  # shorter than Q
        lambda: flatten_codebooks(codes, vocab_size=4),  # ids up to 4 do not fit 4
        lambda: flatten_codebooks(codes - 1, vocab_size=5),
        lambda: unflatten_codebooks(torch.zeros(2, 7, dtype=torch.long), 3, 5),  # 7 % 3
        lambda: unflatten_codebooks(torch.zeros(2, 6, dtype=torch.long) + 14, 3, 5),  # 14 not of codebook 0
    ]:
        with pytest.raises(ValueError, match="expected"):
            call()


# --- the model -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"num_classes": 4}, {"num_streams": 3}])
def test_logits_do_not_depend_on_future_tokens(kw):
    model = tiny(**kw)
    x = ids(2, 3, 20) if kw.get("num_streams") else ids(2, 20)
    labels = torch.tensor([1, 3]) if kw.get("num_classes") else None
    y = x.clone()
    y[..., 12:] = (y[..., 12:] + 1) % V
    with torch.no_grad():
        lx, ly = model(x, labels)[0], model(y, labels)[0]
    assert lx.shape == (*x.shape, V)
    assert torch.equal(lx[..., :12, :], ly[..., :12, :])
    assert not torch.allclose(lx[..., 12:, :], ly[..., 12:, :])


def test_label_dropout_in_train_mode_only():
    model = tiny(num_classes=4, class_dropout=0.5)
    labels = torch.randint(0, 4, (4000,))
    assert torch.equal(model.drop_labels(labels), labels)  # eval mode
    model.train()
    dropped = model.drop_labels(labels)
    nulls = dropped == 4
    assert 0.45 < nulls.float().mean() < 0.55 and torch.equal(dropped[~nulls], labels[~nulls])
    always = tiny(num_classes=4, class_dropout=1.0)
    x, lab = ids(2, 6), torch.tensor([0, 1])
    with torch.no_grad():
        null_logits = always(x, torch.tensor([4, 4]))[0]
        assert not torch.equal(always(x, lab)[0], null_logits)
        always.train()
        assert torch.equal(always(x, lab)[0], null_logits)


def test_save_load_round_trip_is_bitwise_and_strict(tmp_path):
    model = tiny(num_classes=3, tokenizer="titok-s-128-tiny", tokenizer_hash="sha256:abc123")
    model.save_pretrained(tmp_path / "gpt", model_card_kwargs={"name": "my-gpt"})
    assert sorted(p.name for p in (tmp_path / "gpt").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    record = json.loads((tmp_path / "gpt" / "config.json").read_text())
    assert record["architecture"] == "GPT" and record["config"] == model.config
    card = (tmp_path / "gpt" / "README.md").read_text()
    assert "library_name: vtok" in card and "# my-gpt" in card
    assert "`titok-s-128-tiny`" in card and "sha256:abc123" in card

    loaded = GPT.from_pretrained(tmp_path / "gpt")
    assert loaded.config == model.config and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    x, labels = ids(2, 7), torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.equal(model(x, labels)[0], loaded(x, labels)[0])
    assert torch.equal(model.generate(x, 5, labels=labels, cfg_scale=2.0, temperature=0.0),
                       loaded.generate(x, 5, labels=labels, cfg_scale=2.0, temperature=0.0))

    weights = tmp_path / "gpt" / "model.safetensors"
    state = load_file(str(weights))
    for tampered in [{k: v for k, v in state.items() if k != "ln_f.weight"}, {**state, "extra.weight": torch.zeros(1)}]:
        save_file(tampered, str(weights))
        with pytest.raises(ValueError, match="missing keys|unexpected keys"):
            GPT.from_pretrained(tmp_path / "gpt")
    weights.unlink()
    (tmp_path / "gpt" / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match="never unpickles"):
        GPT.from_pretrained(tmp_path / "gpt")


def test_tiny_gpt_overfits_one_sequence():
    torch.manual_seed(0)
    model = GPT(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32).train()
    seq = ids(1, 25, seed=7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        _, loss = model(seq[:, :-1], targets=seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 3.0 and losses[-1] < 0.1 * losses[0]
    prompt = seq[:, :1]
    assert torch.equal(model.generate(prompt, 24, temperature=0.0), seq)


def test_streams_loss_and_ignore_index():
    model = tiny(num_streams=4)
    x = ids(2, 4, 6)
    targets = ids(2, 4, 6, seed=2)
    logits, loss = model(x, targets=targets)
    assert logits.shape == (2, 4, 6, V)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    torch.testing.assert_close(loss, ref)
    masked = targets.clone()
    masked[:, :, :3] = -100
    _, loss_masked = model(x, targets=masked)
    torch.testing.assert_close(loss_masked, torch.nn.functional.cross_entropy(logits[..., 3:, :].reshape(-1, V),
                                                                              targets[..., 3:].reshape(-1)))


@pytest.mark.parametrize("call", [
    lambda m, c: m(ids(2, 5).float()),  # dtype
    lambda m, c: m(ids(2, 1, 5)),  # rank for one stream
    lambda m, c: m(torch.full((2, 5), V)),  # id out of range
    lambda m, c: m(torch.full((2, 5), -1)),
    lambda m, c: m(ids(2, 0)),  # empty
    lambda m, c: m(ids(2, 49)),  # longer than block_size
    lambda m, c: c(ids(2, 48), torch.tensor([0, 1])),  # 48 + class prefix > 48
    lambda m, c: m(ids(2, 5), torch.tensor([0, 1])),  # labels for an unconditional model
    lambda m, c: c(ids(2, 5), torch.tensor([0, 6])),  # label out of range (5 = null is fine)
    lambda m, c: c(ids(2, 5), torch.tensor([0])),  # labels shape
    lambda m, c: m(ids(2, 5), targets=ids(2, 4)),  # targets shape
    lambda m, c: m(ids(2, 5), targets=torch.full((2, 5), V)),
    lambda m, c: m.generate(ids(2, 5), 45),  # 5 + 45 - 1 > 48
    lambda m, c: m.generate(ids(2, 0), 3),  # nothing to condition on
    lambda m, c: m.generate(ids(2, 5), 3, temperature=-1.0),
    lambda m, c: m.generate(ids(2, 5), 3, top_p=0.0),
    lambda m, c: m.generate(ids(2, 5), 3, top_k=0),
    lambda m, c: m.generate(ids(2, 5), 3, allowed=lambda step, logits: logits[:, :-1]),
    lambda m, c: GPT(vocab_size=10, n_embd=30, n_head=4),  # 30 % 4
    lambda m, c: GPT(vocab_size=10, n_embd=36, n_head=4),  # odd head size: no RoPE
    lambda m, c: GPT(vocab_size=0),
    lambda m, c: GPT(vocab_size=10, num_streams=4)(ids(2, 3, 5)),  # 3 streams for 4
])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError, match="expected"):
        call(tiny(), tiny(num_classes=5))
