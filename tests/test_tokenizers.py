"""Behaviour every tokenizer shares, parametrized over the tiny registry models."""
import torch

from conftest import sample_input


def test_encode_ignores_training_mode(tiny):
    x = sample_input(tiny)
    with torch.no_grad():
        expected = tiny.encode(x)
        tiny.train()
        before = {k: v.clone() for k, v in tiny.state_dict().items()}
        assert torch.equal(tiny.encode(x), expected)
    assert all(torch.equal(v, before[k]) for k, v in tiny.state_dict().items())


def test_describe_matches_the_properties(tiny):
    info = tiny.describe()
    assert info["modality"] == tiny.modality and info["vocab_size"] == tiny.vocab_size
    if tiny.modality == "image":
        assert info["bits_per_image"] == tiny.num_tokens * tiny.bits_per_token
    else:
        assert info["bits_per_second"] == tiny.tokens_per_second * tiny.bits_per_token
