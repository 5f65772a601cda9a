"""Losses for tokenizer training: hinge GAN, adaptive GAN weight, LPIPS with a clear offline error."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, the LPIPS backbone


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss: mean(relu(1 - real)) + mean(relu(1 + fake)), halved."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator loss against a hinge discriminator: -mean(fake logits)."""
    return -fake_logits.mean()


def lecam_loss(real_logits: Tensor, fake_logits: Tensor, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """LeCam regularisation (Tseng et al. 2021): relu(mean real - EMA fake)² + relu(EMA real - mean fake)²."""
    return F.relu(real_logits.mean() - ema_fake).pow(2).mean() + F.relu(ema_real - fake_logits.mean()).pow(2).mean()


def adaptive_gan_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's balance (Esser et al. 2021): |grad rec| / |grad gan| at the decoder's last layer, detached."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


class PerceptualLoss(nn.Module):
    """LPIPS-VGG distance of images (B,3,H,W) in [0,1], averaged over the batch; frozen.

    The LPIPS linear heads ship in the `lpips` wheel; the VGG16 backbone comes from torchvision's
    download cache or `backbone_path`. When neither has it, say so instead of downloading.
    """

    def __init__(self, backbone_path: str | Path | None = None):
        super().__init__()
        import lpips

        path = Path(backbone_path) if backbone_path else Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS needs torchvision's VGG16 weights ({VGG16_FILE}); not found at {path}. On a machine with "
                "internet run `python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\"` "
                f"and copy {VGG16_FILE} into {Path(torch.hub.get_dir()) / 'checkpoints'}, or pass backbone_path."
            )
        if backbone_path:  # lpips asks torchvision for the file by its cache name: put it there
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            cache.mkdir(parents=True, exist_ok=True)
            if not (cache / VGG16_FILE).exists():
                (cache / VGG16_FILE).symlink_to(path.resolve())
        self.lpips = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return self.lpips(x_hat * 2 - 1, x * 2 - 1).mean()
