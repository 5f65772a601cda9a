"""PatchGAN discriminator (pix2pix / taming-transformers' NLayerDiscriminator)."""
from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Images (B,3,H,W) in [0,1] -> real/fake logits per patch (B,1,H',W').

    `layers` stride-2 4x4 convs doubling the width up to 8x `channels`, BatchNorm and
    LeakyReLU(0.2), then a stride-1 conv and a 1-channel head, as in Isola et al. 2017.
    """

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*blocks)
        for m in self.modules():  # the init of the reference implementation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x * 2 - 1)
