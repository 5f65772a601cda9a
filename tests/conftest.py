"""Shared fixtures: tiny registry models and real sample inputs for them."""
import pytest
import torch

import vtok
from vtok import assets

TINY = ["vqgan-tiny", "rvq-codec-tiny"]


def sample_input(tok) -> torch.Tensor:
    """A real image or speech excerpt shaped for `tok`."""
    if tok.modality == "image":
        return torch.stack([assets.load_image(p, size=tok.image_size) for p in assets.sample_image_paths()[:2]])
    wav, _ = assets.load_audio(assets.sample_speech_paths()[0], sample_rate=tok.sample_rate)
    return wav[None, :, : tok.sample_rate // 2]


@pytest.fixture(params=TINY)
def tiny(request):
    torch.manual_seed(0)
    return vtok.create(request.param).eval()
