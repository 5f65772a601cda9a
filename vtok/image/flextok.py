"""FlexTok (Bachmann et al. 2025, "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length").

The image goes through a frozen VAE (f8, 16 channels in the official models; `vae: null` works on
pixels, for small CPU models). A ViT encoder reads the 2x2 latent patches followed by R learned
register tokens; patches attend to patches only, registers to every patch and to the registers
before them (an ordered, causal register sequence). The registers are projected to 6 dims and
quantized by FSQ [8,8,8,5,5,5] (64,000 codes): R ordered ids per image.

The decoder is a rectified-flow transformer. Its input is the noised latent patches followed by
the R register embeddings (concatenated into one self-attention sequence), and it predicts the
velocity noise - x0 at time t (x_t = t * noise + (1 - t) * x0; t = 1 is pure noise). Every block
is AdaLN-zero conditioned on t, with separate modulations for patches and registers. Nested
dropout in training keeps the first k registers of each sample (k drawn `uniform`, `pow2` or
`uniform_pow2`) and overwrites the rest with one learned mask token, so any prefix of the ids
decodes; whole register sequences are replaced by a null condition with probability
`cfg_dropout`, for classifier-free guidance at sampling.

Config (plain JSON; flextok-d18-d18 values in brackets):
    image_size      side S of the square input images [256]
    vae             diffusers AutoencoderKL config, or null to work on pixels [SDXL-style f8, 16 channels]
    latent_scale    latents = VAE latents * latent_scale (no shift) [1.0, to be read from the release]
    patch_size      latent patch side [2]
    num_registers   R register tokens = the longest id sequence [256]
    encoder         {width, depth, heads} [1152, 18, 18]
    decoder         {width, depth, heads} [1152, 18, 18]
    mlp_ratio       SwiGLU hidden = int(2 * int(width * mlp_ratio) / 3) [4.0]
    fsq_levels      FSQ levels [8, 8, 8, 5, 5, 5]
    nested_dropout  "uniform" | "pow2" | "uniform_pow2" ["pow2"]
    cfg_dropout     per-sample probability of the null condition in training [0.1]
    null_cond       "learned" (a learned vector) | "zero" ["learned"]
    max_timestep    the official TimestepEmbedder's `max_timestep`: t in [0,1] enters the sinusoids as
                    t * 1000 / max_timestep [1.0; the code default is 1000, the release value is not known here]
    repa_dim        teacher feature size for the REPA projector on decoder block `repa_layer`, or null
    repa_layer      decoder block whose patch tokens REPA aligns [1]

Images are read and written in [0,1]; the VAE sees [-1,1] and tokenization uses the posterior mode.

Official weights (apple/ml-flextok, EPFL-VILAB/flextok_* on the Hub): `FlexTok.convert_official` maps the
official state dict (`vae.vae.*`, `encoder.module_dict.enc_*`, `decoder.module_dict.dec_*`) onto these
modules. The computation follows the official one: attention scale 8 / head_dim (muP), float32 sin-cos
tables built as `build_2d_sincos_posemb`, the time sinusoids in the official order of operations, and
the decoder's learned register positions added before nested dropout and the null condition overwrite
them. tests/fixtures/flextok holds outputs of the official code on a tiny random config.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .. import quantizers
from ..registry import register, register_model
from ..tokenizer import ImageTokenizer

FSQ_LEVELS = [8, 8, 8, 5, 5, 5]
NESTED_DROPOUT = ("uniform", "pow2", "uniform_pow2")
# the SDXL VAE architecture with 16 latent channels (EPFL-VILAB/flextok_vae_c16)
VAE_C16 = {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
           "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512],
           "layers_per_block": 2, "act_fn": "silu", "latent_channels": 16, "norm_num_groups": 32, "sample_size": 256}


# --- blocks -------------------------------------------------------------------------------------
def layer_norm(x: Tensor) -> Tensor:
    """Affine-free LayerNorm over the last dim, computed in float32."""
    return F.layer_norm(x.float(), x.shape[-1:]).to(x.dtype)


def sincos_2d(dim: int, grid: int) -> Tensor:
    """Fixed 2D sine-cosine position table (grid*grid, dim): sin/cos of the row, then of the column
    (row-major positions), computed in float32 as the official table is."""
    if dim % 4:
        raise ValueError(f"flextok: width must be a multiple of 4 for 2D sin-cos positions, got {dim}")
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    r, c = rows.reshape(-1, 1) * omega, cols.reshape(-1, 1) * omega
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention without biases, with affine-free LayerNorm on queries and keys and the
    official muP scale 8 / head_dim (= 1 / sqrt(head_dim) at head_dim 64)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = 8.0 / (width // heads)
        self.wq, self.wk, self.wv, self.proj = (nn.Linear(width, width, bias=False) for _ in range(4))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        q, k, v = (rearrange(w(x), "b n (h d) -> b h n d", h=self.heads) for w in (self.wq, self.wk, self.wv))
        y = F.scaled_dot_product_attention(layer_norm(q), layer_norm(k), v, attn_mask=mask, scale=self.scale)
        return self.proj(rearrange(y, "b h n d -> b n (h d)"))


class SwiGLU(nn.Module):
    """fc2(SiLU(fc1 x) * fc3 x), no biases."""

    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = int(2 * int(width * mlp_ratio) / 3)
        self.fc1, self.fc3 = nn.Linear(width, hidden, bias=False), nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class Block(nn.Module):
    """Pre-norm transformer block; with `groups`, AdaLN-zero: per token group, a gate/shift/scale from the time embedding."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, groups: int = 0):
        super().__init__()
        self.attn, self.mlp = Attention(width, heads), SwiGLU(width, mlp_ratio)
        self.groups = groups
        if groups:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, groups * 6 * width))
            nn.init.zeros_(self.adaLN_modulation[1].weight)
            nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, temb: Tensor | None = None,
                group_of_token: Tensor | None = None) -> Tensor:
        if not self.groups:
            x = x + self.attn(layer_norm(x), mask)
            return x + self.mlp(layer_norm(x))
        mod = self.adaLN_modulation(temb).view(x.shape[0], self.groups, 6, x.shape[-1])[:, group_of_token]  # (B,N,6,D)
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = mod.unbind(2)  # the official chunk order
        x = x + gate_msa * self.attn(layer_norm(x) * (1 + scale_msa) + shift_msa, mask)
        return x + gate_mlp * self.mlp(layer_norm(x) * (1 + scale_mlp) + shift_mlp)


class TimestepEmbedder(nn.Module):
    """t in [0,1] -> 256 sinusoids of t * 1000 / max_timestep (max period 256, cos then sin) -> Linear, SiLU,
    Linear -> (B, width)."""

    def __init__(self, width: int, freqs: int = 256, max_timestep: float = 1.0):
        super().__init__()
        self.freqs, self.max_timestep = freqs, max_timestep
        self.mlp = nn.Sequential(nn.Linear(freqs, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freqs // 2  # the official order of float32 operations (its time args reach ~1000)
        freq = (1000.0 / self.max_timestep) * torch.exp(
            -math.log(256) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
        args = t.float()[:, None] * freq[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linear weights and zero biases (AdaLN and the output heads are zeroed afterwards)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --- the tokenizer ------------------------------------------------------------------------------
@register_model
class FlexTok(ImageTokenizer):
    """Image (B,3,S,S) -> R ordered ids (B,R); any prefix of k ids -> rectified-flow decoder -> image."""

    paper = "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length (Bachmann et al., 2025)"
    family = "flextok"
    variable_length = True

    def __init__(self, *, image_size: int = 256, vae: dict[str, Any] | None = None, latent_scale: float = 1.0,
                 patch_size: int = 2, num_registers: int = 256, encoder: dict[str, int] | None = None,
                 decoder: dict[str, int] | None = None, mlp_ratio: float = 4.0, fsq_levels: list[int] | None = None,
                 nested_dropout: str = "pow2", cfg_dropout: float = 0.1, null_cond: str = "learned",
                 max_timestep: float = 1.0, repa_dim: int | None = None, repa_layer: int = 1):
        encoder = dict(encoder or {"width": 1152, "depth": 18, "heads": 18})
        decoder = dict(decoder or encoder)
        fsq_levels = list(fsq_levels or FSQ_LEVELS)
        super().__init__(image_size=image_size, vae=vae, latent_scale=latent_scale, patch_size=patch_size,
                         num_registers=num_registers, encoder=encoder, decoder=decoder, mlp_ratio=mlp_ratio,
                         fsq_levels=fsq_levels, nested_dropout=nested_dropout, cfg_dropout=cfg_dropout,
                         null_cond=null_cond, max_timestep=max_timestep, repa_dim=repa_dim, repa_layer=repa_layer)
        if nested_dropout not in NESTED_DROPOUT:
            raise ValueError(f"flextok: nested_dropout must be one of {NESTED_DROPOUT}, got {nested_dropout!r}")
        if null_cond not in ("learned", "zero"):
            raise ValueError(f"flextok: null_cond must be 'learned' or 'zero', got {null_cond!r}")
        if nested_dropout != "uniform" and num_registers & (num_registers - 1):
            raise ValueError(f"flextok: nested_dropout {nested_dropout!r} needs a power-of-2 num_registers, got {num_registers}")
        if vae is not None:
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL(**vae).eval().requires_grad_(False)
            channels, down = vae["latent_channels"], 2 ** (len(vae["block_out_channels"]) - 1)
        else:
            self.vae, channels, down = None, 3, 1
        if image_size % (down * patch_size):
            raise ValueError(f"flextok: image_size {image_size} must be a multiple of {down * patch_size} "
                             f"(VAE downsampling {down} x patch_size {patch_size})")
        self.channels, self.grid = channels, image_size // down // patch_size
        de, dd, r, p = encoder["width"], decoder["width"], num_registers, patch_size
        n_patches = self.grid**2

        # encoder: latent patches + registers -> ordered register states -> FSQ
        self.enc_patch_emb = nn.Linear(p * p * channels, de)
        self.register_buffer("enc_posemb", sincos_2d(de, self.grid), persistent=False)
        self.registers = nn.Parameter(torch.zeros(r, de))
        self.encoder = nn.ModuleList(Block(de, encoder["heads"], mlp_ratio) for _ in range(encoder["depth"]))
        self.to_latents = nn.Linear(de, len(fsq_levels))
        self.quantizer = quantizers.build("fsq", dim=len(fsq_levels), levels=fsq_levels)
        seq = n_patches + r
        q, k = torch.arange(seq)[:, None], torch.arange(seq)[None]
        self.register_buffer("enc_mask", (k < n_patches) | (k <= q), persistent=False)  # patches: patches; registers: causal

        # decoder: noised latent patches + (masked) registers, AdaLN-zero on t -> velocity
        self.from_latents = nn.Linear(len(fsq_levels), dd)
        self.register_posemb = nn.Parameter(torch.zeros(r, dd))
        self.mask_token = nn.Parameter(torch.zeros(dd))
        self.null_cond = nn.Parameter(torch.zeros(dd)) if null_cond == "learned" else None
        self.dec_patch_emb = nn.Linear(p * p * channels, dd)
        self.register_buffer("dec_posemb", sincos_2d(dd, self.grid), persistent=False)
        self.time_embedder = TimestepEmbedder(dd, max_timestep=max_timestep)
        self.decoder = nn.ModuleList(Block(dd, decoder["heads"], mlp_ratio, groups=2) for _ in range(decoder["depth"]))
        self.register_buffer("group_of_token", torch.cat([torch.zeros(n_patches), torch.ones(r)]).long(), persistent=False)
        self.head_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dd, 2 * dd))
        self.to_patches = nn.Linear(dd, p * p * channels)
        self.repa_projector = (nn.Sequential(nn.Linear(dd, 2048), nn.SiLU(), nn.Linear(2048, 2048), nn.SiLU(),
                                             nn.Linear(2048, repa_dim)) if repa_dim else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: xavier linears, N(0, 0.02) tokens, zero AdaLN and zero output projections."""
        for module in (self.encoder, self.decoder, self.enc_patch_emb, self.dec_patch_emb, self.from_latents,
                       self.time_embedder, self.head_modulation, self.repa_projector):
            if module is not None:
                module.apply(init_weights)
        for block in self.decoder:
            nn.init.zeros_(block.adaLN_modulation[1].weight)
            nn.init.zeros_(block.adaLN_modulation[1].bias)
        for param in (self.registers, self.register_posemb, self.mask_token) + ((self.null_cond,) if self.null_cond is not None else ()):
            nn.init.trunc_normal_(param, std=0.02)
        for linear in (self.to_latents, self.to_patches, self.head_modulation[1]):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    # --- what the tokenizer tells about itself ----------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_tokens(self) -> int:
        return self.config["num_registers"]

    def check_num_tokens(self, num_tokens: int | None) -> int:
        """Tokens to keep: None means all R; any 1 <= k <= R otherwise."""
        if num_tokens is None:
            return self.num_tokens
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or not 1 <= num_tokens <= self.num_tokens:
            raise ValueError(f"flextok: num_tokens must be an int in 1..{self.num_tokens}, got {num_tokens!r}")
        return num_tokens

    # --- latents ------------------------------------------------------------------------------------
    @torch.no_grad()
    def to_latent(self, x: Tensor) -> Tensor:
        """Images (B,3,S,S) in [0,1] -> the flow's data space (B,C,S/f,S/f): scaled VAE latents (posterior mode) or [-1,1] pixels."""
        x = x * 2 - 1
        if self.vae is None:
            return x
        return self.vae.encode(x.to(next(self.vae.parameters()).dtype)).latent_dist.mode().float() * self.config["latent_scale"]

    @torch.no_grad()
    def from_latent(self, z: Tensor) -> Tensor:
        """The flow's data space -> images (B,3,S,S) in [0,1]."""
        if self.vae is not None:
            z = self.vae.decode(z.to(next(self.vae.parameters()).dtype) / self.config["latent_scale"]).sample.float()
        return ((z + 1) / 2).clamp(0.0, 1.0)

    def patchify(self, z: Tensor) -> Tensor:
        p = self.config["patch_size"]
        return rearrange(z, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        p = self.config["patch_size"]
        return rearrange(tokens, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=self.grid, p1=p, p2=p)

    # --- encoder ------------------------------------------------------------------------------------
    def encode_registers(self, z: Tensor) -> Tensor:
        """Latents (B,C,h,w) -> continuous register states projected to the FSQ dims (B,R,len(levels))."""
        b = z.shape[0]
        h = torch.cat([self.enc_patch_emb(self.patchify(z)) + self.enc_posemb,
                       self.registers.expand(b, -1, -1)], dim=1)
        for block in self.encoder:
            h = block(h, self.enc_mask)
        return self.to_latents(layer_norm(h[:, -self.num_tokens :]))

    # --- decoder ------------------------------------------------------------------------------------
    def condition(self, codes: Tensor, keep: Tensor | None = None, null: Tensor | None = None) -> Tensor:
        """FSQ codes (B,k,levels) -> register embeddings (B,R,D): positions >= keep[b] (default k) hold the
        mask token; samples with null[b] hold the null condition instead."""
        b, k, _ = codes.shape
        reg = self.from_latents(codes) + self.register_posemb[:k]
        reg = torch.cat([reg, self.mask_token.expand(b, self.num_tokens - k, -1)], dim=1)
        if keep is not None:
            dropped = torch.arange(self.num_tokens, device=codes.device)[None] >= keep[:, None]
            reg = torch.where(dropped[..., None], self.mask_token.to(reg.dtype), reg)
        if null is not None:
            empty = self.null_cond if self.null_cond is not None else torch.zeros_like(self.mask_token)
            reg = torch.where(null[:, None, None], empty.to(reg.dtype), reg)
        return reg

    def velocity(self, z_t: Tensor, t: Tensor, cond: Tensor, return_layer: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Noised latents (B,C,h,w) at times t (B,) in [0,1], register embeddings (B,R,D) -> velocity (B,C,h,w)
        (and the patch tokens after decoder block `return_layer`)."""
        temb = self.time_embedder(t)
        h = torch.cat([self.dec_patch_emb(self.patchify(z_t)) + self.dec_posemb, cond], dim=1)
        hidden = None
        for i, block in enumerate(self.decoder):
            h = block(h, temb=temb, group_of_token=self.group_of_token)
            if i == return_layer:
                hidden = h[:, : self.grid**2]
        shift, scale = self.head_modulation(temb)[:, None].chunk(2, dim=-1)
        v = self.unpatchify(self.to_patches(layer_norm(h[:, : self.grid**2]) * (1 + scale) + shift))
        return v if return_layer is None else (v, hidden)

    def sample_keep(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """Nested dropout: registers kept per sample (B,) long, drawn by the configured scheme."""
        r, mode = self.num_tokens, self.config["nested_dropout"]
        if mode == "pow2":
            powers = torch.tensor([1 << i for i in range(r.bit_length())], device=device)
            return powers[torch.randint(len(powers), (batch,), generator=generator, device=device)]
        k = torch.randint(1, r + 1, (batch,), generator=generator, device=device)
        if mode == "uniform_pow2":  # rounded up to a power of 2
            k = 2 ** torch.ceil(torch.log2(k.float())).long()
        return k

    # --- training -----------------------------------------------------------------------------------
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Images (B,3,S,S) in [0,1] -> {"loss": rectified-flow MSE on the velocity, "ids", "keep", "t",
        "stats", "repa_features" (B, patches, repa_dim) or None}."""
        self.check_images(x)
        z0 = self.to_latent(x)
        b, dev = z0.shape[0], z0.device
        q = self.quantizer(self.encode_registers(z0))
        keep = self.sample_keep(b, dev, generator) if self.training else None
        null = (torch.rand(b, generator=generator, device=dev) < self.config["cfg_dropout"]) if self.training else None
        cond = self.condition(q.z_q, keep, null)
        t = torch.sigmoid(torch.randn(b, generator=generator, device=dev))  # logit-normal(0, 1)
        noise = torch.randn(z0.shape, generator=generator, device=dev)
        z_t = t[:, None, None, None] * noise + (1 - t[:, None, None, None]) * z0
        layer = self.config["repa_layer"] if self.repa_projector is not None else None
        out = self.velocity(z_t, t, cond, return_layer=layer)
        v, hidden = out if layer is not None else (out, None)
        loss = F.mse_loss(v.float(), (noise - z0).float())
        return {"loss": loss, "ids": q.ids, "keep": keep, "t": t, "stats": q.stats,
                "repa_features": self.repa_projector(hidden) if hidden is not None else None}

    # --- encode / decode ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor, num_tokens: int | None = None) -> Tensor:
        """Images float (B,3,S,S) in [0,1] -> the first k of R ordered ids (B,k) in [0, 64000)."""
        k = self.check_num_tokens(num_tokens)
        self.check_images(x)
        with self.quantizer.inference():
            return self.quantizer(self.encode_registers(self.to_latent(x))).ids[:, :k]

    @torch.no_grad()
    def decode(self, ids: Tensor, steps: int = 25, guidance: float = 1.0, generator: torch.Generator | None = None,
               noise: Tensor | None = None, seed: int | None = 0) -> Tensor:
        """Ids (B,k), 1 <= k <= R -> images (B,3,S,S) in [0,1] by `steps` Euler steps of the flow from t=1 to 0
        (diffusers' FlowMatchEulerDiscreteScheduler), classifier-free guidance `guidance` (1 = none).

        The starting noise is `noise`, else drawn from `generator`, else from a generator seeded with `seed`
        (so the same ids give the same image), else (seed=None) from torch's global RNG."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        if not isinstance(ids, Tensor) or ids.ndim != 2:
            raise ValueError(f"flextok: expected ids (B, k), got {type(ids).__name__} {tuple(getattr(ids, 'shape', ()))}")
        self.check_num_tokens(ids.shape[1])
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"flextok: steps must be a positive int, got {steps!r}")
        b, dev = ids.shape[0], ids.device
        cond = self.condition(self.quantizer.decode_ids(ids))
        uncond = self.condition(self.quantizer.decode_ids(ids), null=torch.ones(b, dtype=torch.bool, device=dev))
        size = self.grid * self.config["patch_size"]
        if generator is None and seed is not None:
            generator = torch.Generator(dev).manual_seed(seed)
        z = noise if noise is not None else torch.randn(b, self.channels, size, size, generator=generator, device=dev)
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        sigmas = [i / steps for i in range(steps, 0, -1)]  # t = 1, ..., 1/steps
        scheduler.set_timesteps(sigmas=sigmas, device=dev)
        for sigma, t in zip(sigmas, scheduler.timesteps):
            tt = torch.full((b,), sigma, device=dev)  # the official model input: the float t = i / steps
            v = self.velocity(z, tt, cond)
            if guidance != 1.0:
                v_u = self.velocity(z, tt, uncond)
                v = v_u + guidance * (v - v_u)
            z = scheduler.step(v, t, z).prev_sample
        return self.from_latent(z)

    # --- official weights -----------------------------------------------------------------------
    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """The official FlexTok state dict (apple/ml-flextok `FlexTok`: `vae.vae.*` diffusers AutoencoderKL,
        `encoder.module_dict.enc_*`, `decoder.module_dict.dec_*`) -> vtok keys. The fixed sin-cos tables are
        checked against vtok's and dropped; the decoder's learned register table (1, 1, D, R) becomes (R, D)."""
        grid = config["image_size"] // config["patch_size"]
        if config.get("vae") is not None:
            grid //= 2 ** (len(config["vae"]["block_out_channels"]) - 1)
        out: dict[str, Tensor] = {}
        for key, value in state.items():
            key = key.replace("._checkpoint_wrapped_module", "")
            if key == "vae.logvar":  # only with learnable_logvar; not part of the tokenizer
                continue
            if key.startswith("vae.vae."):
                out[key[len("vae."):]] = value
                continue
            for old, new in OFFICIAL_RENAMES:
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            if key in ("enc_posemb", "dec_posemb"):
                if value.is_meta:  # shape checks only
                    continue
                ours = sincos_2d(value.shape[1], grid)
                theirs = rearrange(value[0, :, :grid, :grid].float(), "d h w -> (h w) d")
                atol = 1e-4 if torch.finfo(value.dtype).bits >= 32 else 1e-2  # a release may store half precision
                if theirs.shape != ours.shape or not torch.allclose(theirs, ours, atol=atol, rtol=0):
                    raise ValueError(f"flextok: the official {key} table is not the 2D sin-cos table vtok builds")
                continue
            if key == "register_posemb":  # PositionalEmbedding(learnable_sum, max_sizes=[R]): (1, 1, D, R)
                value = value[0, 0].t()
            out[key] = value
        return out


OFFICIAL_RENAMES = [  # official prefix -> vtok prefix (first match wins)
    ("encoder.module_dict.enc_patch_emb.patch_proj.", "enc_patch_emb."),
    ("encoder.module_dict.enc_posemb_module.posembs", "enc_posemb"),
    ("encoder.module_dict.enc_register_module.registers", "registers"),
    ("encoder.module_dict.enc_transformer.blocks.", "encoder."),
    ("encoder.module_dict.enc_to_latents.proj.", "to_latents."),
    ("decoder.module_dict.dec_from_latents.proj.", "from_latents."),
    ("decoder.module_dict.dec_registers_posemb_module.posembs", "register_posemb"),
    ("decoder.module_dict.dec_nested_dropout.dropout_mask_token", "mask_token"),
    ("decoder.module_dict.dec_latent_dropout.nullcond", "null_cond"),
    ("decoder.module_dict.dec_noise_patch_emb.patch_proj.", "dec_patch_emb."),
    ("decoder.module_dict.dec_patches_posemb_module.posembs", "dec_posemb"),
    ("decoder.module_dict.dec_time_embedder.", "time_embedder."),
    ("decoder.module_dict.dec_transformer.blocks.", "decoder."),
    ("decoder.module_dict.dec_to_patches.adaLN_modulation.", "head_modulation."),
    ("decoder.module_dict.dec_to_patches.proj.", "to_patches."),
]


# --- the zoo ------------------------------------------------------------------------------------
def flextok_config(enc_depth: int, dec_depth: int) -> dict[str, Any]:
    """An official size: width 64 x depth and depth heads of 64 channels, 256 registers, on the c16 VAE."""
    return {"image_size": 256, "vae": dict(VAE_C16), "latent_scale": 1.0, "patch_size": 2, "num_registers": 256,
            "encoder": {"width": 64 * enc_depth, "depth": enc_depth, "heads": enc_depth},
            "decoder": {"width": 64 * dec_depth, "depth": dec_depth, "heads": dec_depth},
            "fsq_levels": list(FSQ_LEVELS), "nested_dropout": "pow2", "cfg_dropout": 0.1, "null_cond": "learned",
            "max_timestep": 1.0}


for _enc, _dec in ((12, 12), (18, 18), (18, 28)):
    register(f"flextok-d{_enc}-d{_dec}", FlexTok, flextok_config(_enc, _dec),
             official=f"EPFL-VILAB/flextok_d{_enc}_d{_dec}_in1k",
             description=f"FlexTok d{_enc}-d{_dec} at the official size (EPFL-VILAB/flextok_d{_enc}_d{_dec}_in1k), "
                         "official weights converted at load",
             tags=("image", "1d", "variable-length", "flow"))
register(
    "flextok-tiny", FlexTok,
    {"image_size": 32, "vae": None, "latent_scale": 1.0, "patch_size": 4, "num_registers": 16,
     "encoder": {"width": 64, "depth": 2, "heads": 4}, "decoder": {"width": 64, "depth": 2, "heads": 4},
     "fsq_levels": list(FSQ_LEVELS), "nested_dropout": "pow2", "cfg_dropout": 0.1, "null_cond": "learned"},
    description="tiny pixel-space config for tests and CPU recipes",
    tags=("image", "1d", "variable-length", "flow"),
)
register(
    "flextok-tiny-vae", FlexTok,
    {"image_size": 32, "vae": {**VAE_C16, "block_out_channels": [16, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
                               "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4,
                               "norm_num_groups": 8, "sample_size": 32},
     "latent_scale": 1.0, "patch_size": 2, "num_registers": 16,
     "encoder": {"width": 64, "depth": 2, "heads": 4}, "decoder": {"width": 64, "depth": 2, "heads": 4},
     "fsq_levels": list(FSQ_LEVELS), "nested_dropout": "pow2", "cfg_dropout": 0.1, "null_cond": "learned"},
    description="tiny config with a (random) f2 diffusers VAE for tests",
    tags=("image", "1d", "variable-length", "flow"),
)
