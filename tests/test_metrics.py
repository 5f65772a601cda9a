"""Token statistics: usage, perplexity, per-position entropy, Zipf fit."""
import math

import pytest
import torch

from vtok.metrics import token_statistics, zipf_fit


def test_uniform_tokens():
    ids = torch.arange(64).repeat(50).view(100, 32)
    s = token_statistics(ids, 64)
    assert s["usage"] == 1.0 and s["entropy_bits"] == pytest.approx(6.0)
    assert s["perplexity"] == pytest.approx(64.0)


def test_per_position_entropy_shows_an_ordered_sequence():
    torch.manual_seed(0)
    ids = torch.randint(0, 256, (4000, 4))
    ids[:, 0] = torch.randint(0, 2, (4000,))  # the first token carries 1 bit, the others up to 8
    h = token_statistics(ids, 256)["per_position_entropy_bits"]
    assert h[0] == pytest.approx(1.0, abs=0.01) and min(h[1:]) > 7.8


def test_zipf_fit_recovers_the_exponent():
    ranks = torch.arange(1, 1001, dtype=torch.float64)
    assert zipf_fit(1e6 * ranks**-1.2)["zipf_exponent"] == pytest.approx(1.2, abs=1e-6)
    assert zipf_fit(1e6 * ranks**-1.2)["zipf_r2"] == pytest.approx(1.0)


def test_multi_codebook_ids_report_per_codebook():
    ids = torch.stack([torch.zeros(10, 20, dtype=torch.long), torch.arange(20).repeat(10, 1)], dim=1)  # (N, Q=2, T)
    s = token_statistics(ids, 32)
    assert s["usage"] == [1 / 32, 20 / 32] and s["perplexity"][0] == pytest.approx(1.0)
    assert math.isnan(s["zipf_exponent"][0])


@pytest.mark.parametrize("bad", [torch.rand(3, 4), torch.zeros(3, dtype=torch.long), torch.full((2, 2), 99)])
def test_bad_ids(bad):
    with pytest.raises(ValueError):
        token_statistics(bad, 64)
