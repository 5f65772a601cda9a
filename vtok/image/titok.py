"""TiTok (Yu et al. 2024, "An Image is Worth 32 Tokens for Reconstruction and Generation").

A ViT encoder reads the image's 16x16 patches together with K learned latent tokens; only the
latent tokens are kept, projected to `token_dim` channels and quantized (a learned codebook of
l2-normalised codes). A ViT decoder reads the K token embeddings together with one mask token
per patch and predicts each patch.

Config (plain JSON; TiTok-L-32 values in brackets):
    image_size   side S of the square input images [256]
    patch_size   side p of a patch; the patch grid is g = S/p [16]
    num_tokens   K latent tokens per image [32]
    token_dim    channels of a quantized token [12]
    encoder      ViT size of the encoder: "small" | "base" | "large" or {width, depth, heads} ["large"]
    decoder      ViT size of the decoder ["large"]
    quantizer    keywords for `vtok.quantizers.build`; `dim` defaults to token_dim
                 [learned l2-normalised VQ, 4096 codes, commitment 0.25]
    legacy       the official `is_legacy` switch [true]. True: the two-stage TiTok releases. The
                 encoder flattens its latent tokens with a raw reshape of (K, width) to
                 (width, K) (a quirk the released weights depend on), and the decoder predicts,
                 for each patch, logits over the 1024 codes of a frozen MaskGIT-VQGAN ("proxy
                 codes"); their softmax mixes the proxy codebook and the VQGAN's conv decoder
                 turns that grid into pixels. Stage 1 trains on cross-entropy against the proxy
                 tokenizer's codes, stage 2 fine-tunes the decoders on pixels.
                 False: the single-stage models (TiTok-BL/SL VQ): the decoder predicts each
                 patch's pixels directly, followed by a 3x3 conv.
    proxy        (legacy only) the proxy VQGAN: codebook_size, latent_dim and its decoder's
                 channels, channel_mult, num_res_blocks [1024, 256, 128, [1,1,2,2,4], 2]

Images are read and written in [0,1], as the official code does.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .. import quantizers
from ..nn.transformer import Transformer, vit_size
from ..quantizers import QuantizerOutput
from ..quantizers.vq import library_codebook_state
from ..registry import register, register_model
from ..tokenizer import ImageTokenizer
from .vqgan import VQGAN, Decoder

TITOK_QUANTIZER = {"kind": "vq", "codebook_size": 4096, "ema": False, "distance": "cosine", "commitment_weight": 0.25}
VQ8K_QUANTIZER = {"kind": "vq", "codebook_size": 8192, "ema": False, "distance": "l2", "commitment_weight": 0.25}
MASKGIT_PROXY = {"codebook_size": 1024, "latent_dim": 256, "channels": 128, "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2}


def init_vit_weights(module: nn.Module) -> None:
    """Truncated-normal(0.02) linear/conv weights, zero biases, unit LayerNorms (the official init)."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --- encoder ------------------------------------------------------------------------------------
class TiTokEncoder(nn.Module):
    """Patches + K latent tokens through a ViT; the latent tokens -> (B, K, token_dim)."""

    def __init__(self, image_size: int, patch_size: int, num_tokens: int, token_dim: int, size: dict[str, int], legacy: bool):
        super().__init__()
        width, grid = size["width"], image_size // patch_size
        scale = width**-0.5
        self.legacy = legacy
        self.patch_embed = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid**2 + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(**size)
        self.ln_post = nn.LayerNorm(width)
        self.to_tokens = nn.Linear(width, token_dim)

    def forward(self, x: Tensor, latent_tokens: Tensor) -> Tensor:
        b, (k, width) = x.shape[0], latent_tokens.shape
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.class_embedding.expand(b, 1, width), patches], dim=1) + self.positional_embedding
        latents = (latent_tokens + self.latent_token_positional_embedding).expand(b, k, width)
        h = self.transformer(self.ln_pre(torch.cat([h, latents], dim=1)))
        latents = self.ln_post(h[:, -k:])
        if self.legacy:  # the released weights saw (B, K, width) reshaped, not transposed, to (B, width, K)
            latents = latents.reshape(b, width, k).transpose(1, 2)
        return self.to_tokens(latents)


# --- decoder ------------------------------------------------------------------------------------
class TiTokDecoder(nn.Module):
    """n <= K token vectors + g*g mask tokens through a ViT -> per-patch proxy logits or pixels."""

    def __init__(self, image_size: int, patch_size: int, num_tokens: int, token_dim: int, size: dict[str, int],
                 proxy_codes: int | None):
        super().__init__()
        width = size["width"]
        self.grid, self.patch_size = image_size // patch_size, patch_size
        scale = width**-0.5
        self.decoder_embed = nn.Linear(token_dim, width)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid**2 + 1, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(**size)
        self.ln_post = nn.LayerNorm(width)
        if proxy_codes is not None:  # legacy: logits over the proxy VQGAN's codes
            self.head = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, proxy_codes))
            self.conv_out = None
        else:
            self.head = nn.Linear(width, patch_size * patch_size * 3)
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """z (B, n, token_dim) -> proxy logits (B, g*g, codes), or pixels (B, 3, S, S) unclamped."""
        b, n, _ = z.shape
        x = self.decoder_embed(z) + self.latent_token_positional_embedding[:n]
        width = x.shape[-1]
        queries = torch.cat([self.class_embedding.expand(b, 1, width), self.mask_token.expand(b, self.grid**2, width)], dim=1)
        h = self.transformer(self.ln_pre(torch.cat([queries + self.positional_embedding, x], dim=1)))
        out = self.head(self.ln_post(h[:, 1 : 1 + self.grid**2]))
        if self.conv_out is None:
            return out
        p = self.patch_size
        return self.conv_out(rearrange(out, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=self.grid, p1=p, p2=p))


# --- the tokenizer ------------------------------------------------------------------------------
@register_model
class TiTok(ImageTokenizer):
    """Image (B,3,S,S) -> K ids (B,K) from a ViT's latent tokens; K ids -> ViT decoder -> image."""

    paper = "An Image is Worth 32 Tokens for Reconstruction and Generation (TiTok, Yu et al., 2024)"
    family = "titok"

    def __init__(
        self,
        *,
        image_size: int = 256,
        patch_size: int = 16,
        num_tokens: int = 32,
        token_dim: int = 12,
        encoder: str | dict[str, int] = "large",
        decoder: str | dict[str, int] = "large",
        quantizer: dict[str, Any] | None = None,
        legacy: bool = True,
        proxy: dict[str, Any] | None = None,
    ):
        quantizer = dict(TITOK_QUANTIZER if quantizer is None else quantizer)
        proxy = dict(MASKGIT_PROXY if proxy is None and legacy else proxy or {}) or None
        super().__init__(
            image_size=image_size, patch_size=patch_size, num_tokens=num_tokens, token_dim=token_dim,
            encoder=encoder, decoder=decoder, quantizer=quantizer, legacy=legacy, proxy=proxy,
        )
        who = self.family
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ValueError(f"{who}: image_size must be a positive multiple of patch_size, got {image_size} and {patch_size}")
        if num_tokens < 1 or token_dim < 1:
            raise ValueError(f"{who}: expected num_tokens, token_dim >= 1, got {num_tokens}, {token_dim}")
        if quantizer.get("dim", token_dim) != token_dim or "kind" not in quantizer:
            raise ValueError(f"{who}: quantizer needs a 'kind' and dim == token_dim ({token_dim}), got {quantizer}")
        if legacy and 2 ** (len(proxy["channel_mult"]) - 1) != patch_size:
            raise ValueError(f"{who}: the proxy VQGAN must upsample by patch_size ({patch_size}), got channel_mult {proxy['channel_mult']}")
        enc, dec = vit_size(encoder, f"{who} encoder"), vit_size(decoder, f"{who} decoder")

        self.latent_tokens = nn.Parameter(enc["width"] ** -0.5 * torch.randn(num_tokens, enc["width"]))
        self.encoder = TiTokEncoder(image_size, patch_size, num_tokens, token_dim, enc, legacy)
        self.quantizer = quantizers.build(**{"dim": token_dim, **quantizer})
        if self.quantizer.multi_codebook:
            raise ValueError(f"{who}: needs a single-codebook quantizer (ids (B, K)), got kind {quantizer['kind']!r}")
        self.decoder = TiTokDecoder(image_size, patch_size, num_tokens, token_dim, dec, proxy["codebook_size"] if legacy else None)
        self.encoder.apply(init_vit_weights)
        self.decoder.apply(init_vit_weights)
        if legacy:  # the frozen proxy VQGAN's codebook and conv decoder (pixels from proxy-code mixtures)
            self.proxy_codebook = nn.Parameter(torch.zeros(proxy["codebook_size"], proxy["latent_dim"]))
            nn.init.uniform_(self.proxy_codebook, -1.0 / proxy["codebook_size"], 1.0 / proxy["codebook_size"])
            self.pixel_decoder = Decoder(proxy["channels"], proxy["channel_mult"], proxy["num_res_blocks"], proxy["latent_dim"])

    @property
    def legacy(self) -> bool:
        return bool(self.config["legacy"])

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_tokens(self) -> int:
        return int(self.config["num_tokens"])

    @property
    def grid(self) -> int:
        """Side of the patch grid, image_size / patch_size."""
        return self.image_size // self.config["patch_size"]

    @property
    def last_layer(self) -> Tensor:
        """Weight of the last layer that makes pixels, where the adaptive GAN weight is measured."""
        return self.pixel_decoder.conv_out.weight if self.legacy else self.decoder.conv_out.weight

    def load_proxy(self, vqgan: VQGAN) -> None:
        """Copy a trained proxy VQGAN's codebook and decoder into this (legacy) model."""
        if not self.legacy:
            raise ValueError(f"{self.family}: only legacy (two-stage) models have a proxy decoder")
        with torch.no_grad():
            self.proxy_codebook.copy_(vqgan.quantizer.codebook.reshape(self.proxy_codebook.shape))
        self.pixel_decoder.load_state_dict(vqgan.decoder.state_dict())

    # --- the method, step by step ---------------------------------------------------------------
    def quantize(self, x: Tensor) -> QuantizerOutput:
        """Images (B,3,S,S) in [0,1] -> the quantizer's answer on the K latent tokens, z_q (B,K,token_dim)."""
        return self.quantizer(self.encoder(x, self.latent_tokens))

    def proxy_pixels(self, logits: Tensor) -> Tensor:
        """Proxy-code logits (B, g*g, codes) -> pixels (B,3,S,S): softmax-mixed codes through the VQGAN decoder."""
        mixed = logits.softmax(dim=-1) @ self.proxy_codebook
        return self.pixel_decoder(rearrange(mixed, "b (h w) d -> b d h w", h=self.grid))

    def decode_latents(self, z_q: Tensor) -> Tensor:
        """Token vectors (B,n,token_dim), n <= K -> images (B,3,S,S), unclamped."""
        out = self.decoder(z_q)
        return self.proxy_pixels(out) if self.legacy else out

    def forward(self, x: Tensor, proxy_codes: Tensor | None = None) -> dict[str, Any]:
        """Training step: images (B,3,S,S) -> {x_hat unclamped, ids (B,K), loss, stats[, aux_loss]}.

        proxy_codes (B, g*g) long, the proxy VQGAN's ids of x (legacy stage 1): adds aux_loss, the
        cross-entropy of the decoder's proxy logits against them.
        """
        out = self.quantize(x)
        z_q = self.drop_tail(out.z_q)
        result = {"ids": out.ids, "loss": out.loss, "stats": out.stats}
        if self.legacy:
            logits = self.decoder(z_q)
            result["x_hat"] = self.proxy_pixels(logits)
            if proxy_codes is not None:
                result["aux_loss"] = F.cross_entropy(logits.flatten(0, 1).float(), proxy_codes.flatten())
        else:
            result["x_hat"] = self.decoder(z_q)
        return result

    def drop_tail(self, z_q: Tensor) -> Tensor:
        """Training-time token dropping; TiTok keeps every token (One-D-Piece overrides this)."""
        return z_q

    # --- encode / decode ------------------------------------------------------------------------
    def encode(self, x: Tensor, num_tokens: int | None = None) -> Tensor:
        """Images float (B,3,S,S) in [0,1] -> ids long (B,K)."""
        k = self.check_num_tokens(num_tokens)
        self.check_images(x)
        with self.quantizer.inference():
            return self.quantize(x).ids[:, :k]

    def decode(self, ids: Tensor) -> Tensor:
        """Ids integer (B,K) in [0, vocab_size) -> images float (B,3,S,S) clamped to [0,1]."""
        if isinstance(ids, Tensor) and ids.ndim == 2:
            self.check_num_tokens(ids.shape[1])
        return self.decode_latents(self.quantizer.decode_ids(ids)).clamp(0.0, 1.0)

    # --- official weights -----------------------------------------------------------------------
    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """The official TiTok / One-D-Piece state dict (bytedance/1d-tokenizer layout) -> vtok keys."""
        out: dict[str, Tensor] = {}
        for key, value in state.items():
            new = key
            for old, rep in OFFICIAL_RENAMES:
                new = new.replace(old, rep)
            if value.ndim == 4 and value.shape[-2:] == (1, 1) and ("to_tokens" in new or "decoder.head" in new):
                value = value.flatten(1)  # 1x1 convs -> linear layers on tokens
            if not config.get("legacy", True):
                new = new.replace("decoder.head.0.", "decoder.head.")  # ffn = (1x1 conv, rearrange)
            out[new] = value
        codebook = out.pop("quantizer.embedding.weight")
        quantizer = {**TITOK_QUANTIZER, **(config.get("quantizer") or {})}
        if quantizer.get("distance") == "cosine" and not quantizer.get("ema", True):
            out["quantizer.vq.embedding.weight"] = codebook
        else:
            out.update({f"quantizer.{k}": v for k, v in library_codebook_state(codebook).items()})
        return out


OFFICIAL_RENAMES = [
    ("pixel_quantize.embedding.weight", "proxy_codebook"),
    (".transformer.", ".transformer.blocks."),
    (".ln_1.", ".norm1."), (".ln_2.", ".norm2."),
    (".attn.in_proj_", ".attn.qkv."), (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."), (".mlp.c_proj.", ".mlp.fc2."),
    ("encoder.conv_out.", "encoder.to_tokens."),
    ("decoder.ffn.", "decoder.head."),
    ("quantize.embedding.", "quantizer.embedding."),
]


# --- the zoo ------------------------------------------------------------------------------------
def titok_config(num_tokens: int, encoder: str, decoder: str, **extra: Any) -> dict[str, Any]:
    return {"image_size": 256, "patch_size": 16, "num_tokens": num_tokens, "token_dim": 12, "encoder": encoder,
            "decoder": decoder, "quantizer": dict(TITOK_QUANTIZER), "legacy": True, "proxy": dict(MASKGIT_PROXY), **extra}


def vq8k_config(num_tokens: int, encoder: str, decoder: str) -> dict[str, Any]:
    return titok_config(num_tokens, encoder, decoder, token_dim=64, quantizer=dict(VQ8K_QUANTIZER), legacy=False, proxy=None)


OFFICIAL = "yucornetto/tokenizer_titok_{}_imagenet"
for name, cfg, official, desc in [
    ("titok-l-32", titok_config(32, "large", "large"), "l32", "TiTok-L-32, two-stage, 32 tokens x 4096 codes"),
    ("titok-b-64", titok_config(64, "base", "base"), "b64", "TiTok-B-64, two-stage, 64 tokens x 4096 codes"),
    ("titok-s-128", titok_config(128, "small", "small"), "s128", "TiTok-S-128, two-stage, 128 tokens x 4096 codes"),
    ("titok-bl-64-vq", vq8k_config(64, "base", "large"), "bl64_vq8k", "TiTok-BL-64 VQ, single-stage, 64 tokens x 8192 codes"),
    ("titok-bl-128-vq", vq8k_config(128, "base", "large"), "bl128_vq8k", "TiTok-BL-128 VQ, single-stage, 128 tokens x 8192 codes"),
    ("titok-sl-256-vq", vq8k_config(256, "small", "large"), "sl256_vq8k", "TiTok-SL-256 VQ, single-stage, 256 tokens x 8192 codes"),
]:
    register(name, TiTok, cfg, official=OFFICIAL.format(official), description=desc, tags=("image", "1d"))

TINY_VIT = {"width": 64, "depth": 2, "heads": 4}
register(
    "titok-tiny", TiTok,
    {"image_size": 32, "patch_size": 4, "num_tokens": 16, "token_dim": 8, "encoder": TINY_VIT, "decoder": TINY_VIT,
     "quantizer": {**TITOK_QUANTIZER, "codebook_size": 256}, "legacy": False, "proxy": None},
    description="tiny single-stage config for tests and CPU recipes",
)
register(
    "titok-tiny-legacy", TiTok,
    {"image_size": 32, "patch_size": 4, "num_tokens": 16, "token_dim": 8, "encoder": TINY_VIT, "decoder": TINY_VIT,
     "quantizer": {**TITOK_QUANTIZER, "codebook_size": 256}, "legacy": True,
     "proxy": {"codebook_size": 1024, "latent_dim": 32, "channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": 1}},
    description="tiny two-stage config (proxy = vqgan-tiny) for tests",
)
# the shipped CPU-trained pair (titok-64px, onedpiece-64px): 64 px, 32 tokens x 1024 EMA codes, ViT 192 x 4
CPU_64PX = {"image_size": 64, "patch_size": 8, "num_tokens": 32, "token_dim": 12,
            "encoder": {"width": 192, "depth": 4, "heads": 3}, "decoder": {"width": 192, "depth": 4, "heads": 3},
            "quantizer": {"kind": "vq", "codebook_size": 1024, "distance": "cosine", "kmeans_init": True,
                          "dead_code_threshold": 2.0},
            "legacy": False, "proxy": None}
register(
    "titok-64px", TiTok, CPU_64PX,
    description="shipped: 64x64 photos, 32 tokens x 1024 codes (320 bits), single-stage, trained on CPU by "
                "recipes/titok/titok-64px.yaml",
    tags=("image", "1d", "shipped"),
)
