"""Sequence layouts between token shards and the GPT: training pairs, prompts, masks, back to codes."""
import random

import pytest
import torch

from vtok.ar.patterns import delay_interleave
from vtok.ar.sequence import IGNORE, SequenceFormat


def test_fixed_length_images():
    fmt = SequenceFormat(vocab_size=10, max_tokens=4, block_size=8)
    x, y = fmt.training_pair(torch.tensor([1, 2, 3, 4]), random.Random(0))
    assert x.tolist() == [10, 1, 2, 3, 4] and y.tolist() == [1, 2, 3, 4, 11]  # BOS=10, EOS=11
    assert fmt.prompt(2).tolist() == [[10], [10]] and fmt.stream_vocab == 13


def test_variable_length_images_ask_with_a_length_token():
    fmt = SequenceFormat(vocab_size=10, max_tokens=4, variable_length=True, block_size=8)
    assert fmt.stream_vocab == 10 + 3 + 4
    lengths = set()
    for seed in range(30):
        x, y = fmt.training_pair(torch.tensor([1, 2, 3, 4]), random.Random(seed))
        k = len(x) - 2
        lengths.add(k)
        assert x.tolist() == [10, fmt.length_token(k), *range(1, k + 1)]
        assert y.tolist() == [IGNORE, *range(1, k + 1), 11]  # the length is given, never predicted
    assert lengths == {1, 2, 3, 4}
    assert fmt.prompt(1, 3).tolist() == [[10, fmt.length_token(3)]]
    with pytest.raises(ValueError, match="expected 1..4"):
        fmt.length_token(5)


def test_long_audio_is_cropped_to_the_block():
    fmt = SequenceFormat(vocab_size=64, block_size=16)
    x, y = fmt.training_pair(torch.arange(50) % 64, random.Random(0))
    assert len(x) == len(y) == 16 and torch.equal(x[1:], y[:-1])


def test_delay_pattern_pairs_masks_and_codes():
    fmt = SequenceFormat(vocab_size=8, codebooks=3, pattern="delay", block_size=12)
    codes = torch.randint(0, 8, (3, 5))
    x, y = fmt.training_pair(codes, random.Random(0))
    delayed = delay_interleave(codes[None], fmt.pad)[0]
    assert x.shape == (3, 7) and (x[:, 0] == fmt.bos).all() and torch.equal(x[:, 1:], delayed[:, :-1])
    assert ((y == IGNORE) == (delayed == fmt.pad)).all()
    mask = fmt.allowed(frames=5)
    logits = torch.zeros(1, 3, fmt.stream_vocab)
    first = mask(0, logits)  # step 0: stream 0 holds a code, streams 1 and 2 must be PAD
    assert torch.isinf(first[0, 0, fmt.code_vocab:]).all() and first[0, 1].argmax() == fmt.pad
    generated = torch.cat([torch.full((1, 3, 1), fmt.bos), delayed[None]], dim=-1)
    assert torch.equal(fmt.to_codes(generated, 1, 5), codes[None])


def test_flattened_codebooks():
    fmt = SequenceFormat(vocab_size=8, codebooks=2, pattern="flatten", block_size=32)
    codes = torch.randint(0, 8, (2, 4))
    x, y = fmt.training_pair(codes, random.Random(0))
    assert fmt.code_vocab == 16 and len(x) == 1 + 8
    assert torch.equal(fmt.to_codes(torch.cat([x, y[-1:]])[None], 1, 4), codes[None])


def test_bad_layouts():
    with pytest.raises(ValueError, match="pattern"):
        SequenceFormat(vocab_size=8, pattern="zigzag")
    with pytest.raises(ValueError, match="max_tokens"):
        SequenceFormat(vocab_size=8, variable_length=True)
