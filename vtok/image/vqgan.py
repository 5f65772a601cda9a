"""MaskGIT's VQGAN (Chang et al. 2022): a 2D conv tokenizer, images -> a grid of code ids.

Config (plain JSON; paper defaults in brackets):
    image_size       side S of the square input images [256]
    channels         base width C of the conv stacks [128]
    channel_mult     width multiplier per resolution level; L levels downsample by 2**(L-1) [1,1,2,2,4]
    num_res_blocks   residual blocks per level, and in the middle of encoder and decoder [2]
    latent_dim       channels D of the latent grid that is quantized [256]
    quantizer        keywords for `vtok.quantizers.build`, `dim` defaults to latent_dim
                     [{"kind": "vq", "codebook_size": 1024}]

Layout and parameter names follow the MaskGIT VQGAN that TiTok (bytedance/1d-tokenizer) uses as
its frozen proxy-code pixel decoder: no attention, GroupNorm(32)+SiLU, average-pool down,
nearest+conv up, and its 1x1 shortcut quirk (see `ResnetBlock`), so that the released
encoder/decoder weights map key for key. The model reads and writes pixels in [0,1] directly, as
that release does.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .. import quantizers
from ..nn.conv2d import Downsample, ResnetBlock, Upsample, group_norm
from ..quantizers import QuantizerOutput
from ..quantizers.vq import library_codebook_state
from ..registry import register, register_model
from ..tokenizer import ImageTokenizer

PAPER_QUANTIZER = {"kind": "vq", "codebook_size": 1024}


def res_blocks(c_in: int, c_out: int, n: int) -> nn.ModuleList:
    """n ResnetBlocks, the first mapping c_in -> c_out, the rest c_out -> c_out."""
    return nn.ModuleList(ResnetBlock(c_in if i == 0 else c_out, c_out, shortcut_on_output=True) for i in range(n))


# --- encoder ------------------------------------------------------------------------------------
class DownLevel(nn.Module):
    """One encoder resolution: residual blocks, then 2x down unless last: (B,c_in,H,W) -> (B,c_out,H',W')."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, downsample: bool):
        super().__init__()
        self.block = res_blocks(c_in, c_out, num_res_blocks)
        self.downsample = Downsample() if downsample else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        return self.downsample(x)


class Encoder(nn.Module):
    """Pixels (B,3,S,S) -> latents (B,latent_dim,S/f,S/f), f = 2**(len(channel_mult)-1)."""

    def __init__(self, channels: int, channel_mult: Sequence[int], num_res_blocks: int, latent_dim: int):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.down = nn.ModuleList(
            DownLevel(c_in, c_out, num_res_blocks, downsample=i < len(widths) - 1)
            for i, (c_in, c_out) in enumerate(zip([channels, *widths[:-1]], widths))
        )
        self.mid = res_blocks(widths[-1], widths[-1], num_res_blocks)
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], latent_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# --- decoder ------------------------------------------------------------------------------------
class UpLevel(nn.Module):
    """One decoder resolution: residual blocks, then 2x up if asked: (B,c_in,H,W) -> (B,c_out,H',W')."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, upsample: bool):
        super().__init__()
        self.block = res_blocks(c_in, c_out, num_res_blocks)
        self.upsample_conv = Upsample(c_out) if upsample else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        return self.upsample_conv(x)


class Decoder(nn.Module):
    """Latents (B,latent_dim,g,g) -> pixels (B,3,g*f,g*f), unclamped (about [0,1] once trained)."""

    def __init__(self, channels: int, channel_mult: Sequence[int], num_res_blocks: int, latent_dim: int):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(latent_dim, widths[-1], 3, padding=1)
        self.mid = res_blocks(widths[-1], widths[-1], num_res_blocks)
        # up[i] is the mirror of the encoder's down[i] (so it runs last to first) and upsamples unless i == 0
        self.up = nn.ModuleList(
            UpLevel(c_in, c_out, num_res_blocks, upsample=i > 0)
            for i, (c_in, c_out) in enumerate(zip([*widths[1:], widths[-1]], widths))
        )
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# --- the tokenizer ------------------------------------------------------------------------------
@register_model
class VQGAN(ImageTokenizer):
    """Conv encoder -> quantizer on each cell of an (S/f)x(S/f) grid -> conv decoder; ids row-major."""

    paper = "MaskGIT: Masked Generative Image Transformer (Chang et al., 2022)"

    def __init__(
        self,
        *,
        image_size: int,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        latent_dim: int = 256,
        quantizer: dict[str, Any] | None = None,
    ):
        quantizer = dict(PAPER_QUANTIZER if quantizer is None else quantizer)
        channel_mult = list(channel_mult)
        super().__init__(
            image_size=image_size, channels=channels, channel_mult=channel_mult,
            num_res_blocks=num_res_blocks, latent_dim=latent_dim, quantizer=quantizer,
        )
        if not channel_mult or min(channel_mult) < 1 or channels < 1 or num_res_blocks < 1 or latent_dim < 1:
            raise ValueError(
                "vqgan: expected a non-empty channel_mult of ints >= 1 and channels, num_res_blocks, latent_dim >= 1, "
                f"got channel_mult={channel_mult}, channels={channels}, num_res_blocks={num_res_blocks}, latent_dim={latent_dim}"
            )
        factor = 2 ** (len(channel_mult) - 1)
        if image_size < factor or image_size % factor:
            raise ValueError(f"vqgan: image_size must be a positive multiple of {factor} (2**(len(channel_mult)-1)), got {image_size}")
        if quantizer.get("dim", latent_dim) != latent_dim:
            raise ValueError(f"vqgan: quantizer dim ({quantizer['dim']}) must equal latent_dim ({latent_dim})")
        if "kind" not in quantizer:
            raise ValueError(f"vqgan: quantizer config needs a 'kind', got {quantizer}")

        self.encoder = Encoder(channels, channel_mult, num_res_blocks, latent_dim)
        self.quantizer = quantizers.build(**{"dim": latent_dim, **quantizer})
        if self.quantizer.multi_codebook:
            raise ValueError(f"vqgan: needs a single-codebook quantizer (ids (B, N)), got kind {quantizer['kind']!r}")
        self.decoder = Decoder(channels, channel_mult, num_res_blocks, latent_dim)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def grid(self) -> int:
        """Side of the square token grid, image_size / 2**(len(channel_mult)-1)."""
        return self.image_size // 2 ** (len(self.config["channel_mult"]) - 1)

    @property
    def num_tokens(self) -> int:
        return self.grid**2

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's output conv, where the adaptive GAN weight is measured."""
        return self.decoder.conv_out.weight

    def quantize(self, x: Tensor) -> QuantizerOutput:
        """Images (B,3,S,S) in [0,1] -> the quantizer's answer on the flattened grid, z_q (B,N,D)."""
        return self.quantizer(rearrange(self.encoder(x), "b d h w -> b (h w) d"))

    def decode_latents(self, z_q: Tensor) -> Tensor:
        """Code vectors (B,N,D) -> images (B,3,S,S), unclamped."""
        return self.decoder(rearrange(z_q, "b (h w) d -> b d h w", h=self.grid))

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Training step: images (B,3,S,S) in [0,1] -> {x_hat (B,3,S,S) unclamped, ids (B,N), loss, stats}.

        No input checks here: they cost a device sync per step; `encode` checks.
        """
        out = self.quantize(x)
        return {"x_hat": self.decode_latents(out.z_q), "ids": out.ids, "loss": out.loss, "stats": out.stats}

    # --- encode / decode ------------------------------------------------------------------------
    def encode(self, x: Tensor, num_tokens: int | None = None) -> Tensor:
        """Images float (B,3,S,S) in [0,1] -> ids long (B,N), N = grid**2, row-major over the grid."""
        self.check_num_tokens(num_tokens)
        self.check_images(x)
        with self.quantizer.inference():  # no EMA codebook update from encoding, whatever the mode
            return self.quantize(x).ids

    def decode(self, ids: Tensor) -> Tensor:
        """Ids integer (B,N) in [0, vocab_size) -> images float (B,3,S,S) clamped to [0,1]."""
        if isinstance(ids, Tensor) and ids.ndim == 2 and ids.shape[1] != self.num_tokens:
            raise ValueError(f"ids: expected shape (B, {self.num_tokens}) ({self.grid}x{self.grid} grid), got {tuple(ids.shape)}")
        return self.decode_latents(self.quantizer.decode_ids(ids)).clamp(0.0, 1.0)

    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """The MaskGIT VQGAN of bytedance/1d-tokenizer (encoder., decoder., quantize.embedding.weight) -> vtok keys."""
        out = {k: v for k, v in state.items() if not k.startswith("quantize.")}
        out.update({f"quantizer.{k}": v for k, v in library_codebook_state(state["quantize.embedding.weight"]).items()})
        return out


register(
    "maskgit-vqgan", VQGAN,
    {"image_size": 256, "channels": 128, "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "latent_dim": 256,
     "quantizer": dict(PAPER_QUANTIZER)},
    # the release is a pickle: vtok.load("maskgit-vqgan") explains how to convert it to safetensors once
    official="fun-research/TiTok", official_file="maskgit-vqgan-imagenet-f16-256.bin",
    description="MaskGIT VQGAN, f16, 1024 codes, 256 tokens (TiTok's proxy tokenizer)",
)
register(
    "vqgan-tiny", VQGAN,
    {"image_size": 32, "channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "latent_dim": 32,
     "quantizer": {"kind": "vq", "codebook_size": 256}},
    description="tiny config for tests",
)
