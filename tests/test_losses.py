"""Training losses and the PatchGAN discriminator."""
import pytest
import torch

from vtok.nn.discriminator import PatchDiscriminator
from vtok.nn.losses import PerceptualLoss, adaptive_gan_weight, hinge_d_loss, hinge_g_loss, lecam_loss


def test_patch_discriminator_shape_and_gradients():
    d = PatchDiscriminator(channels=8, layers=3)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    logits = d(x)
    assert logits.shape == (2, 1, 6, 6)
    logits.mean().backward()
    assert x.grad.abs().sum() > 0


def test_lecam_loss():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0])
    assert lecam_loss(real, fake, torch.tensor(0.0), torch.tensor(0.0)).item() == pytest.approx(4.0 + 4.0)
    assert lecam_loss(real, fake, torch.tensor(5.0), torch.tensor(3.0)).item() == pytest.approx(0.0 + 49.0)


def test_hinge_losses():
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0  # confident and right
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(1.0)
    assert hinge_g_loss(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_adaptive_weight_balances_gradient_norms():
    w = torch.ones(3, requires_grad=True)
    rec, gan = (w * 4).sum(), (w * 2).sum()
    assert adaptive_gan_weight(rec, gan, w).item() == pytest.approx(2.0, rel=1e-3)


def test_perceptual_loss_says_where_the_backbone_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth.*not found"):
        PerceptualLoss()
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        PerceptualLoss(tmp_path / "nowhere.pth")
