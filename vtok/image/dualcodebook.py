"""TokenFlow (Qu et al. 2025, "TokenFlow: Unified Image Tokenizer for Multimodal Understanding and Generation").

Two encoders read the image. The semantic encoder is a copy of a pretrained vision teacher (CLIP
ViT-B/16 or SigLIP-so400m, a `transformers` model) that keeps training; its patch tokens go
through Linear-Tanh-Linear to `semantic_dim` channels. The pixel encoder is a VQGAN-style CNN
(LlamaGen layout) followed by a 1x1 conv to `pixel_dim` channels. Both give a G x G grid; the
two are stacked into one (semantic_dim + pixel_dim)-channel map h.

h is quantized by multi-scale residual quantization (VAR style): for each scale s (coarse to
fine) the residual is area-downsampled to s x s, each cell is quantized, the codes are bicubic
upsampled back to G x G, added to the running sum and subtracted (detached) from the residual.
Each cell is quantized with a *shared mapping* over two l2-normalised codebooks of the same
size K, a semantic one and a pixel one: the semantic and pixel parts of the cell are each
l2-normalised and one index is chosen,

    i* = argmin_i  |z_sem - e_sem[i]|^2 + w * |z_pix - e_pix[i]|^2       (w = pixel_weight, 1.0)

so one id picks a pair of codes. The ids of all scales, row-major per scale, coarse to fine,
are the image's tokens (sum of s^2 ids). Training drops one random scale (not the first) with
probability `scale_drop`.

The semantic half of the summed codes goes through a small ViT (semantic decoder) that
predicts the frozen teacher's features (cosine loss); the pixel half goes through a 1x1 conv and
a CNN decoder to pixels. The frozen teacher that makes the targets is not part of the state dict:
it is loaded from `teacher["source"]` when first needed. Training starts with
`init_from_teacher()`, which copies the teacher's weights into the semantic encoder; `forward`
returns everything a training step needs (reconstruction, semantic prediction, teacher features,
quantizer losses).

Config (plain JSON; tokenflow-clipb-32k values in brackets):
    image_size         side S of the square input images [256]
    scales             side of each scale's grid, coarse to fine; the last is G [1,2,4,6,8,10,12,14,16]
    codebook_size      K entries of each codebook [32768]
    semantic_dim       channels of a semantic code [32]
    pixel_dim          channels of a pixel code [8]
    pixel_weight       w, weight of the pixel distance in the shared mapping [1.0]
    commitment_weight  beta of the commitment loss [0.25]
    scale_drop         probability per training step of dropping one random scale [0.1]
    teacher            the vision teacher:
                       kind       "clip" | "siglip" (transformers CLIPVisionModelWithProjection |
                                  SiglipVisionModel)
                       source     Hub id or local directory of its pretrained weights, or null for a
                                  random model built from `config` with `seed` (tests)
                       config     the transformers vision config (architecture of the semantic encoder)
                       layer      hidden state used as features: -1 last, -2 the one before [-1]
                       post_norm  apply the final LayerNorm to those features [true]
                       mean, std  the teacher's input normalisation for the targets [CLIP's; 0.5 for siglip]
                       The semantic encoder itself reads [-1,1] pixels (the official quirk).
    pixel_size         side of the pixel branch's input; the image is bicubic-resized to it and
                       the output back (432 for the SigLIP model); null = image_size [null]
    pixel_encoder      {channels, channel_mult, num_res_blocks, z_channels} [128, [1,1,2,2,4], 2, 256]
    pixel_decoder      same keys [256, [1,1,2,2,4], 4, 256] (the "enhanced" decoder)
    semantic_decoder   {width, depth, heads, grid}: grid = side of its position table (interpolated
                       to G when different) [768, 3, 12, 14]

Images are read and written in [0,1]; both branches see [-1,1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..nn.conv2d import Upsample, group_norm
from ..nn.transformer import Transformer, vit_size
from ..quantizers.base import Quantizer, check_ids
from ..registry import register, register_model
from ..tokenizer import ImageTokenizer
from .titok import init_vit_weights

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]
TEACHER_KINDS = ("clip", "siglip")
TEACHER_DEFAULTS = {"layer": -1, "post_norm": True, "mean": None, "std": None, "seed": 0, "source": None}  # mean/std: per kind


# --- blocks: the pixel branch (LlamaGen's VQGAN layout) ----------------------------------------
class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus the input (1x1 conv when widths differ)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.nin_shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W cells, 1x1 conv projections, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = (rearrange(f(h), "b c h w -> b 1 (h w) c") for f in (self.q, self.k, self.v))
        y = rearrange(F.scaled_dot_product_attention(q, k, v)[:, 0], "b (h w) c -> b c h w", h=x.shape[2])
        return x + self.proj_out(y)


class Downsample(nn.Conv2d):
    """Zero-pad right and bottom by one, 3x3 conv with stride 2: (B,C,H,W) -> (B,C,H/2,W/2)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (0, 1, 0, 1)))


class Level(nn.Module):
    """One resolution: n residual blocks (each followed by attention if `attn`), then a resampler."""

    def __init__(self, c_in: int, c_out: int, n: int, attn: bool, resample: nn.Module | None):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c_in if i == 0 else c_out, c_out) for i in range(n))
        self.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(n if attn else 0))
        if resample is not None:
            self.resample = resample

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return self.resample(x) if hasattr(self, "resample") else x


def check_cnn(spec: dict[str, Any], who: str) -> None:
    keys = {"channels", "channel_mult", "num_res_blocks", "z_channels"}
    if not isinstance(spec, dict) or set(spec) != keys:
        raise ValueError(f"tokenflow: {who} must be a dict with keys {sorted(keys)}, got {spec!r}")
    if not spec["channel_mult"] or min(spec["channel_mult"]) < 1 or min(spec["channels"], spec["num_res_blocks"], spec["z_channels"]) < 1:
        raise ValueError(f"tokenflow: {who} needs a non-empty channel_mult and sizes >= 1, got {spec}")


class PixelEncoder(nn.Module):
    """Pixels (B,3,P,P) in [-1,1] -> (B,z_channels,P/f,P/f), f = 2**(len(channel_mult)-1); attention at the last level."""

    def __init__(self, channels: int, channel_mult: list[int], num_res_blocks: int, z_channels: int):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        self.conv_blocks = nn.ModuleList(
            Level(c_in, c_out, num_res_blocks, attn=i == last, resample=Downsample(c_out) if i < last else None)
            for i, (c_in, c_out) in enumerate(zip([channels, *widths[:-1]], widths))
        )
        self.mid = nn.ModuleList([ResBlock(widths[-1], widths[-1]), AttnBlock(widths[-1]), ResBlock(widths[-1], widths[-1])])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for block in [*self.conv_blocks, *self.mid]:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class PixelDecoder(nn.Module):
    """(B,z_channels,g,g) -> pixels (B,3,g*f,g*f), about [-1,1]; levels lowest resolution first, attention there."""

    def __init__(self, channels: int, channel_mult: list[int], num_res_blocks: int, z_channels: int):
        super().__init__()
        widths = [channels * m for m in reversed(channel_mult)]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(z_channels, widths[0], 3, padding=1)
        self.mid = nn.ModuleList([ResBlock(widths[0], widths[0]), AttnBlock(widths[0]), ResBlock(widths[0], widths[0])])
        self.conv_blocks = nn.ModuleList(
            Level(c_in, c_out, num_res_blocks + 1, attn=i == 0, resample=Upsample(c_out) if i < last else None)
            for i, (c_in, c_out) in enumerate(zip([widths[0], *widths[:-1]], widths))
        )
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for block in [*self.mid, *self.conv_blocks]:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# --- blocks: the semantic branch -----------------------------------------------------------------
def resize_positions(table: Tensor, grid: int) -> Tensor:
    """A square position table (g0*g0, D) -> (grid*grid, D), bicubic as the official code does it
    (scale factor (grid + 0.1) / g0, the DINO trick), unchanged when g0 == grid."""
    g0 = math.isqrt(table.shape[0])
    if g0 == grid:
        return table
    img = rearrange(table, "(h w) d -> 1 d h w", h=g0)
    scale = (grid + 0.1) / g0
    img = F.interpolate(img.float(), scale_factor=(scale, scale), mode="bicubic").to(table.dtype)
    return rearrange(img, "1 d h w -> (h w) d")


def teacher_classes(kind: str) -> tuple[type, type]:
    """(model class, config class) of a teacher kind, from transformers."""
    try:
        import transformers
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("tokenflow needs the `transformers` package for its semantic encoder: pip install transformers (or vtok[semantic])") from None
    if kind == "clip":
        return transformers.CLIPVisionModelWithProjection, transformers.CLIPVisionConfig
    return transformers.SiglipVisionModel, transformers.SiglipVisionConfig


def vision_tower(model: nn.Module) -> nn.Module:
    """The vision transformer inside a transformers vision model (embeddings, encoder.layers, norms).

    transformers 5 flattens CLIPVisionModel/SiglipVisionModel; 4.x keeps it under `vision_model`.
    """
    inner = getattr(model, "vision_model", model)
    return getattr(inner, "vision_model", inner)


def build_tower(kind: str, config: dict[str, Any]) -> nn.Module:
    """A randomly initialised vision tower of a teacher kind from its transformers config dict."""
    model_cls, config_cls = teacher_classes(kind)
    if kind == "clip":  # the tower alone, without the projection (which only the frozen teacher uses)
        import transformers

        model_cls = transformers.CLIPVisionModel
    return vision_tower(model_cls(config_cls(**config)))


def tower_features(tower: nn.Module, kind: str, x: Tensor, layer: int, post_norm: bool) -> Tensor:
    """Patch-token features (B, g*g, D) of a transformers CLIP/SigLIP vision tower: hidden state
    `layer` (-1 the last, -2 the one before, as in `hidden_states[layer]`), CLS dropped, final
    LayerNorm if post_norm. Position tables are resized to the input's grid (`resize_positions`)."""
    emb = tower.embeddings
    patches = emb.patch_embedding(x.to(emb.patch_embedding.weight.dtype))
    grid = patches.shape[-1]
    h = patches.flatten(2).transpose(1, 2)
    table = emb.position_embedding.weight
    if kind == "clip":
        h = torch.cat([emb.class_embedding.expand(h.shape[0], 1, -1).to(h.dtype), h], dim=1)
        h = h + torch.cat([table[:1], resize_positions(table[1:], grid)])
        h = tower.pre_layrnorm(h)
    else:
        h = h + resize_positions(table, grid)
    layers = tower.encoder.layers
    for block in layers[: layer % (len(layers) + 1)]:
        out = block(h, None)
        h = out[0] if isinstance(out, tuple) else out
    if kind == "clip":
        h = h[:, 1:]
    return tower.post_layernorm(h) if post_norm else h


class SemanticDecoder(nn.Module):
    """Semantic codes (B,C,G,G) -> predicted teacher features (B,G*G,out_dim): a BEiT-v2-style ViT
    (linear embed, CLS token, learned positions, pre-norm blocks with LayerNorm eps 1e-6, final
    LayerNorm on the patch tokens), then Linear-Tanh-Linear."""

    def __init__(self, code_dim: int, width: int, depth: int, heads: int, grid: int, out_dim: int):
        super().__init__()
        self.patch_embed = nn.Linear(code_dim, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, width))
        self.transformer = Transformer(width, depth, heads)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out_dim))
        for module in self.transformer.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = 1e-6
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for i, block in enumerate(self.transformer.blocks):  # the BEiT depth rescaling
            block.attn.proj.weight.data.div_(math.sqrt(2.0 * (i + 1)))
            block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (i + 1)))

    def forward(self, z: Tensor) -> Tensor:
        grid = z.shape[-1]
        h = self.patch_embed(rearrange(z, "b c h w -> b (h w) c"))
        h = torch.cat([self.cls_token.expand(h.shape[0], 1, -1), h], dim=1)
        table = self.pos_embed[0]
        h = h + torch.cat([table[:1], resize_positions(table[1:], grid)])
        return self.head(self.norm(self.transformer(h)[:, 1:]))


# --- the shared-mapping multi-scale quantizer ----------------------------------------------------
class DualCodebook(Quantizer):
    """Two l2-normalised codebooks of K entries (semantic_dim and pixel_dim) with one shared index.

    A vector z (semantic part | pixel part) is split, each part l2-normalised, and quantized to
    i* = argmin_i |z_sem - e_sem[i]|^2 + w |z_pix - e_pix[i]|^2, the output being the pair of
    codes (e_sem[i*] | e_pix[i*]). Codes are learned by gradient (codebook loss + beta * commitment
    loss on the normalised vectors, straight-through estimator), initialised uniform(+-1/K) then
    normalised, and always used normalised, like vtok's learned cosine VQ.
    """

    kind = "dual"

    def __init__(self, semantic_dim: int, pixel_dim: int, codebook_size: int, *, pixel_weight: float = 1.0,
                 commitment_weight: float = 0.25, stats_window: int | None = None):
        super().__init__(semantic_dim + pixel_dim, codebook_size, 1, stats_window)
        if semantic_dim < 1 or pixel_dim < 1 or pixel_weight < 0:
            raise ValueError(f"dual: expected semantic_dim, pixel_dim >= 1 and pixel_weight >= 0, "
                             f"got {semantic_dim}, {pixel_dim}, {pixel_weight}")
        self.split = (semantic_dim, pixel_dim)
        self.pixel_weight = float(pixel_weight)
        self.commitment_weight = commitment_weight
        self.semantic = nn.Embedding(codebook_size, semantic_dim)
        self.pixel = nn.Embedding(codebook_size, pixel_dim)
        for table in (self.semantic, self.pixel):
            nn.init.uniform_(table.weight, -1.0 / codebook_size, 1.0 / codebook_size)
            with torch.no_grad():
                table.weight.copy_(F.normalize(table.weight, dim=-1))

    @property
    def codebook(self) -> Tensor:
        """The pairs of unit-norm codes, (K, semantic_dim + pixel_dim)."""
        return torch.cat([F.normalize(self.semantic.weight, dim=-1), F.normalize(self.pixel.weight, dim=-1)], dim=-1)

    def normalise(self, z: Tensor) -> Tensor:
        """z (..., D) with each of its two parts l2-normalised."""
        sem, pix = z.split(self.split, dim=-1)
        return torch.cat([F.normalize(sem, dim=-1), F.normalize(pix, dim=-1)], dim=-1)

    def distances(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Squared distances (N, K) of normalised vectors z (N, D) to the semantic and the pixel codes."""
        out = []
        for part, table in zip(z.split(self.split, dim=-1), (self.semantic, self.pixel)):
            codes = F.normalize(table.weight.float(), dim=-1)
            # |z|^2 + |e|^2 - 2 z.e, as the official code, so that near-ties resolve alike
            out.append(part.pow(2).sum(-1, keepdim=True) + codes.pow(2).sum(-1) - 2 * part @ codes.t())
        return out[0], out[1]

    def assign(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (..., D) -> (z normalised per part, float32; ids (...) of the shared mapping)."""
        with torch.autocast(z.device.type, enabled=False):
            z = self.normalise(z.float())
            d_sem, d_pix = self.distances(z.reshape(-1, self.dim))
            ids = (d_sem + self.pixel_weight * d_pix).argmin(dim=-1).view(z.shape[:-1])
        return z, ids

    def quantize_parts(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z (..., D) -> (z_q with straight-through gradient, ids, codebook loss, commitment loss)."""
        z_n, ids = self.assign(z)
        codes = self.lookup(ids)
        codebook_loss = F.mse_loss(codes, z_n.detach())
        commit_loss = F.mse_loss(z_n, codes.detach())
        return (z_n + (codes - z_n).detach()).to(z.dtype), ids, codebook_loss, commit_loss

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_q, ids, codebook_loss, commit_loss = self.quantize_parts(z)
        return z_q, ids, codebook_loss + self.commitment_weight * commit_loss

    def lookup(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.codebook)


@dataclass(frozen=True)
class MultiScaleOutput:
    """z_q (B,D,G,G) the summed codes; ids (B,N) long (-1 where a scale was dropped); loss =
    codebook_loss + beta * commitment_loss, each averaged over the scales used; stats: code usage."""

    z_q: Tensor
    ids: Tensor
    loss: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    stats: Mapping[str, Tensor]


class MultiScaleQuantizer(nn.Module):
    """VAR-style residual quantization of a (B,D,G,G) map over `scales` with a `DualCodebook`.

    For s in scales: r_s = area-resize(residual, s); q_s = codebook(r_s); up = bicubic-resize(q_s, G);
    z_q += up; residual -= up (detached). Ids are each scale's row-major ids, coarse to fine.
    In training, with probability `scale_drop` one scale other than the first is skipped.
    """

    def __init__(self, codebook: DualCodebook, scales: list[int], scale_drop: float = 0.0):
        super().__init__()
        self.codebook, self.scales, self.scale_drop = codebook, list(scales), scale_drop
        self.offsets = [0]
        for s in self.scales:
            self.offsets.append(self.offsets[-1] + s * s)

    @property
    def num_tokens(self) -> int:
        return self.offsets[-1]

    def upsample(self, q: Tensor) -> Tensor:
        g = self.scales[-1]
        return F.interpolate(q, size=(g, g), mode="bicubic")

    def forward(self, h: Tensor) -> MultiScaleOutput:
        """h (B,D,G,G) float -> MultiScaleOutput."""
        keep = list(range(len(self.scales)))
        if self.training and len(keep) > 1 and float(torch.rand((), device="cpu")) < self.scale_drop:
            keep.pop(int(torch.randint(1, len(keep), (), device="cpu")))
        residual, z_q = h, torch.zeros_like(h)
        ids = torch.full((h.shape[0], self.num_tokens), -1, dtype=torch.long, device=h.device)
        codebook_loss, commit_loss = [], []
        for k in keep:
            s = self.scales[k]
            r = F.interpolate(residual, size=(s, s), mode="area")
            q, ids_s, cb, cm = self.codebook.quantize_parts(rearrange(r, "b d h w -> b h w d"))
            up = self.upsample(rearrange(q, "b h w d -> b d h w").to(h.dtype))
            z_q = z_q + up
            residual = residual - up.detach()
            ids[:, self.offsets[k] : self.offsets[k + 1]] = ids_s.flatten(1)
            codebook_loss.append(cb)
            commit_loss.append(cm)
        cb, cm = torch.stack(codebook_loss).mean(), torch.stack(commit_loss).mean()
        self.codebook.usage.update(ids.unsqueeze(-1), sync=self.training)
        return MultiScaleOutput(z_q, ids, cb + self.codebook.commitment_weight * cm, cb, cm, self.codebook.usage.stats())

    def num_scales(self, num_tokens: int) -> int | None:
        """How many leading scales `num_tokens` ids cover, or None when it is not a scale boundary."""
        return self.offsets.index(num_tokens) if num_tokens in self.offsets[1:] else None

    def decode_ids(self, ids: Tensor) -> Tensor:
        """Ids (B,n) of the first scales (n a sum of leading s^2) -> summed codes (B,D,G,G)."""
        check_ids(ids, self.codebook.codebook_size, 1, False)
        n = self.num_scales(ids.shape[1])
        if n is None:
            raise ValueError(f"ids: expected shape (B, n) with n one of {self.offsets[1:]} (all ids of the first "
                             f"scales of {self.scales}), got {tuple(ids.shape)}")
        z_q = 0
        for k in range(n):
            s = self.scales[k]
            codes = self.codebook.lookup(ids[:, self.offsets[k] : self.offsets[k + 1]].long())
            z_q = z_q + self.upsample(rearrange(codes, "b (h w) d -> b d h w", h=s))
        return z_q


# --- the tokenizer ------------------------------------------------------------------------------
def teacher_spec(teacher: dict[str, Any]) -> dict[str, Any]:
    """The teacher config with its defaults filled in; ValueError when malformed."""
    if not isinstance(teacher, dict) or teacher.get("kind") not in TEACHER_KINDS or not isinstance(teacher.get("config"), dict):
        raise ValueError(f"tokenflow: teacher must be a dict with kind in {TEACHER_KINDS} and a transformers "
                         f"vision config dict under 'config', got {teacher!r}")
    unknown = set(teacher) - {"kind", "config", *TEACHER_DEFAULTS}
    if unknown:
        raise ValueError(f"tokenflow: unknown teacher keys {sorted(unknown)}; expected kind, config, {sorted(TEACHER_DEFAULTS)}")
    norm = {"mean": CLIP_MEAN, "std": CLIP_STD} if teacher["kind"] == "clip" else {"mean": HALF, "std": HALF}
    return {**TEACHER_DEFAULTS, **norm, **teacher}


class TeacherSlot(list):
    """Holds the frozen teacher (at most one module). copy.deepcopy shares it instead of copying it, so
    a copy of the tokenizer (e.g. the EMA of the weights a training callback keeps) uses the same frozen
    teacher rather than a second one in memory."""

    def __deepcopy__(self, memo: dict) -> "TeacherSlot":
        return self


@register_model
class TokenFlow(ImageTokenizer):
    """Image (B,3,S,S) -> multi-scale ids (B, sum s^2) over two codebooks with one shared index;
    ids -> pixel decoder -> image, and ids -> semantic codes -> semantic features."""

    paper = "TokenFlow: Unified Image Tokenizer for Multimodal Understanding and Generation (Qu et al., 2025)"
    family = "tokenflow"

    def __init__(
        self,
        *,
        image_size: int = 256,
        scales: list[int] | None = None,
        codebook_size: int = 32768,
        semantic_dim: int = 32,
        pixel_dim: int = 8,
        pixel_weight: float = 1.0,
        commitment_weight: float = 0.25,
        scale_drop: float = 0.1,
        teacher: dict[str, Any] | None = None,
        pixel_size: int | None = None,
        pixel_encoder: dict[str, Any] | None = None,
        pixel_decoder: dict[str, Any] | None = None,
        semantic_decoder: dict[str, Any] | None = None,
    ):
        scales = list(scales or CLIPB_SCALES)
        teacher = dict(teacher or CLIPB_TEACHER)
        pixel_encoder = dict(pixel_encoder or PIXEL_CNN)
        pixel_decoder = dict(pixel_decoder or ENHANCED_DECODER)
        semantic_decoder = dict(semantic_decoder or {"width": 768, "depth": 3, "heads": 12, "grid": 14})
        super().__init__(
            image_size=image_size, scales=scales, codebook_size=codebook_size, semantic_dim=semantic_dim,
            pixel_dim=pixel_dim, pixel_weight=pixel_weight, commitment_weight=commitment_weight, scale_drop=scale_drop,
            teacher=teacher, pixel_size=pixel_size, pixel_encoder=pixel_encoder, pixel_decoder=pixel_decoder,
            semantic_decoder=semantic_decoder,
        )
        spec = teacher_spec(teacher)
        if not scales or min(scales) < 1 or any(a >= b for a, b in zip(scales, scales[1:])):
            raise ValueError(f"tokenflow: scales must be increasing grid sides >= 1, got {scales}")
        if not 0.0 <= scale_drop <= 1.0:
            raise ValueError(f"tokenflow: scale_drop must be a probability, got {scale_drop}")
        check_cnn(pixel_encoder, "pixel_encoder")
        check_cnn(pixel_decoder, "pixel_decoder")
        if pixel_encoder["channel_mult"] != pixel_decoder["channel_mult"]:
            raise ValueError(f"tokenflow: pixel encoder and decoder need the same channel_mult, got "
                             f"{pixel_encoder['channel_mult']} and {pixel_decoder['channel_mult']}")
        grid = scales[-1]
        patch = spec["config"].get("patch_size")
        if not isinstance(patch, int) or image_size // patch != grid:
            raise ValueError(f"tokenflow: image_size // the teacher's patch_size ({patch}) must be the last scale "
                             f"({grid}), got image_size {image_size}")
        factor = 2 ** (len(pixel_encoder["channel_mult"]) - 1)
        if (pixel_size or image_size) != grid * factor:
            raise ValueError(f"tokenflow: the pixel branch input ({pixel_size or image_size}) must be the last scale "
                             f"({grid}) times the CNN's downsampling {factor}; set pixel_size")
        if set(semantic_decoder) != {"width", "depth", "heads", "grid"} or not isinstance(semantic_decoder["grid"], int) \
                or semantic_decoder["grid"] < 1:
            raise ValueError(f"tokenflow: semantic_decoder must be a dict with keys width, depth, heads and grid (an int >= 1, "
                             f"the side of its position table), got {semantic_decoder}")
        dec = vit_size({k: semantic_decoder[k] for k in ("width", "depth", "heads")}, "tokenflow semantic_decoder")

        # semantic branch: the teacher's architecture (weights from the teacher: `init_from_teacher`)
        self.semantic_encoder = build_tower(spec["kind"], spec["config"])
        width = self.semantic_encoder.embeddings.patch_embedding.out_channels
        self.encode_head = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, semantic_dim))
        self.encode_head.apply(init_vit_weights)
        self.target_dim = spec["config"].get("projection_dim", 512) if spec["kind"] == "clip" else width
        self.semantic_decoder = SemanticDecoder(semantic_dim, dec["width"], dec["depth"], dec["heads"],
                                                semantic_decoder["grid"], self.target_dim)
        self.freeze_unused_teacher_parts(spec)
        # pixel branch
        self.pixel_encoder = PixelEncoder(**pixel_encoder)
        self.quant_conv = nn.Conv2d(pixel_encoder["z_channels"], pixel_dim, 1)
        self.post_quant_conv = nn.Conv2d(pixel_dim, pixel_decoder["z_channels"], 1)
        self.pixel_decoder = PixelDecoder(**pixel_decoder)
        # the shared-mapping multi-scale quantizer
        codebook = DualCodebook(semantic_dim, pixel_dim, codebook_size, pixel_weight=pixel_weight,
                                commitment_weight=commitment_weight)
        self.quantizer = MultiScaleQuantizer(codebook, scales, scale_drop)
        self._teacher = TeacherSlot()  # the frozen teacher, loaded when first needed, not in the state dict

    def freeze_unused_teacher_parts(self, spec: dict[str, Any]) -> None:
        """Layers after the feature layer, an unused final norm and SigLIP's pooling head never get gradients."""
        layers = self.semantic_encoder.encoder.layers
        for block in layers[spec["layer"] % (len(layers) + 1):]:
            block.requires_grad_(False)
        if not spec["post_norm"]:
            self.semantic_encoder.post_layernorm.requires_grad_(False)
        if hasattr(self.semantic_encoder, "head"):
            self.semantic_encoder.head.requires_grad_(False)

    # --- what the tokenizer tells about itself ----------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.config["codebook_size"]

    @property
    def num_tokens(self) -> int:
        return self.quantizer.num_tokens

    @property
    def scales(self) -> list[int]:
        return list(self.config["scales"])

    @property
    def grid(self) -> int:
        """Side G of the finest scale, the grid of both encoders."""
        return self.scales[-1]

    @property
    def last_layer(self) -> Tensor:
        """Weight of the pixel decoder's output conv, where an adaptive GAN weight is measured."""
        return self.pixel_decoder.conv_out.weight

    def check_num_tokens(self, num_tokens: int | None) -> int:
        """None (all scales) or the ids of the first k scales, a sum of leading s^2."""
        if num_tokens is None:
            return self.num_tokens
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or self.quantizer.num_scales(num_tokens) is None:
            raise ValueError(f"tokenflow: num_tokens must be one of {self.quantizer.offsets[1:]} (the ids of the first "
                             f"scales of {self.scales}), got {num_tokens!r}")
        return num_tokens

    # --- the teacher ----------------------------------------------------------------------------
    def teacher(self) -> nn.Module:
        """The frozen teacher (transformers model, eval mode, no gradients), loaded on first use."""
        if not self._teacher:
            self._teacher.append(load_teacher(teacher_spec(self.config["teacher"])))
        return self._teacher[0]

    @torch.no_grad()
    def init_from_teacher(self) -> None:
        """Copy the teacher's vision tower into the semantic encoder (the start of training)."""
        self.semantic_encoder.load_state_dict(vision_tower(self.teacher()).state_dict())

    @torch.no_grad()
    def teacher_features(self, x: Tensor) -> Tensor:
        """Images (B,3,S,S) in [0,1] -> the frozen teacher's features (B,G*G,target_dim), the semantic targets."""
        spec = teacher_spec(self.config["teacher"])
        teacher = self.teacher().to(x.device)
        mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) for v in (spec["mean"], spec["std"]))
        feats = tower_features(vision_tower(teacher), spec["kind"], (x.clamp(0, 1) - mean) / std, spec["layer"], spec["post_norm"])
        return teacher.visual_projection(feats) if spec["kind"] == "clip" else feats

    # --- the method, step by step ---------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """Images (B,3,S,S) in [0,1] -> h (B, semantic_dim + pixel_dim, G, G), semantic channels first."""
        spec = teacher_spec(self.config["teacher"])
        signed = 2 * x - 1
        sem = tower_features(self.semantic_encoder, spec["kind"], signed, spec["layer"], spec["post_norm"])
        sem = rearrange(self.encode_head(sem.to(self.encode_head[0].weight.dtype)), "b (h w) c -> b c h w", h=self.grid)
        p = self.config["pixel_size"]
        pix_in = signed if p is None or p == self.image_size else F.interpolate(signed, size=(p, p), mode="bicubic")
        pix = self.quant_conv(self.pixel_encoder(pix_in))
        return torch.cat([sem, pix], dim=1)

    def quantize(self, x: Tensor) -> MultiScaleOutput:
        """Images (B,3,S,S) in [0,1] -> the multi-scale quantizer's answer on their features."""
        return self.quantizer(self.features(x))

    def split_codes(self, z_q: Tensor) -> tuple[Tensor, Tensor]:
        """Summed codes (B,D,G,G) -> (semantic part, pixel part)."""
        return z_q.split([self.config["semantic_dim"], self.config["pixel_dim"]], dim=1)

    def decode_pixels(self, z_pix: Tensor) -> Tensor:
        """Pixel codes (B,pixel_dim,G,G) -> images (B,3,S,S) in [0,1] space, unclamped."""
        y = self.pixel_decoder(self.post_quant_conv(z_pix))
        if y.shape[-1] != self.image_size:
            y = F.interpolate(y, size=(self.image_size, self.image_size), mode="bicubic")
        return (y + 1) / 2

    def forward(self, x: Tensor, targets: Tensor | None = None) -> dict[str, Any]:
        """Training step: images (B,3,S,S) in [0,1] -> {
            x_hat (B,3,S,S) [0,1] space, unclamped; semantic (B,G*G,target_dim) the semantic decoder's
            prediction; teacher (B,G*G,target_dim) the frozen teacher's features (or `targets`);
            semantic_loss mean(1 - cos(semantic, teacher)); ids (B,N) (-1 for a dropped scale);
            loss = codebook_loss + beta * commitment_loss; codebook_loss; commitment_loss; stats}.

        No input checks here (they cost a device sync per step); `encode` checks.
        """
        out = self.quantize(x)
        z_sem, z_pix = self.split_codes(out.z_q)
        semantic = self.semantic_decoder(z_sem)
        teacher = self.teacher_features(x) if targets is None else targets
        semantic_loss = (1 - F.cosine_similarity(semantic.float(), teacher.float(), dim=-1)).mean()
        return {"x_hat": self.decode_pixels(z_pix), "semantic": semantic, "teacher": teacher, "semantic_loss": semantic_loss,
                "ids": out.ids, "loss": out.loss, "codebook_loss": out.codebook_loss,
                "commitment_loss": out.commitment_loss, "stats": out.stats}

    # --- encode / decode ------------------------------------------------------------------------
    def encode(self, x: Tensor, num_tokens: int | None = None) -> Tensor:
        """Images float (B,3,S,S) in [0,1] -> ids long (B,N), N = sum of s^2 (row-major per scale, coarse
        to fine); num_tokens keeps the ids of the first scales only."""
        n = self.check_num_tokens(num_tokens)
        self.check_images(x)
        training = self.quantizer.training
        self.quantizer.eval()  # no scale drop when encoding, whatever the mode
        try:
            return self.quantize(x).ids[:, :n]
        finally:
            self.quantizer.train(training)

    def codes(self, ids: Tensor) -> Tensor:
        """Ids (B,n) of the first scales -> summed codes (B,D,G,G); ValueError naming the expected shape."""
        if not isinstance(ids, Tensor) or ids.ndim != 2:
            got = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"ids: expected an integer tensor (B, {self.num_tokens}) (or the ids of the first scales), got {got}")
        return self.quantizer.decode_ids(ids)

    def decode(self, ids: Tensor) -> Tensor:
        """Ids integer (B,N) in [0, vocab_size) (or those of the first scales) -> images (B,3,S,S) in [0,1],
        from the pixel codebook."""
        return self.decode_pixels(self.split_codes(self.codes(ids))[1]).clamp(0.0, 1.0)

    def semantic_features(self, ids: Tensor, with_pixel: bool = False) -> Tensor:
        """Ids (B,N) -> the semantic codebook's embeddings summed over the scales, (B, G*G, semantic_dim),
        row-major: the input of an understanding model. with_pixel=True gives both parts
        (B, G*G, semantic_dim + pixel_dim), the 40-d features the official LLaVA model reads."""
        z_q = self.codes(ids)
        z = z_q if with_pixel else self.split_codes(z_q)[0]
        return rearrange(z, "b d h w -> b (h w) d")

    def decode_semantic(self, ids: Tensor) -> Tensor:
        """Ids (B,N) -> the semantic decoder's prediction of the teacher's features (B, G*G, target_dim)."""
        return self.semantic_decoder(self.split_codes(self.codes(ids))[0])

    # --- official weights -----------------------------------------------------------------------
    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """The official TokenFlow state dict (ByteFlow-AI/TokenFlow, tokenflow/tokenizer/vq_model.py) -> vtok keys.

        Takes the model's state dict (a training checkpoint's "model" entry); "model."/"module."
        prefixes are dropped. OpenAI-CLIP names of the clip semantic encoder become transformers',
        the semantic decoder's q/v biases become one qkv bias (a zero key bias between them).
        """
        kind = teacher_spec(config.get("teacher") or CLIPB_TEACHER)["kind"]
        flat = {}
        for key, value in state.items():
            for prefix in ("module.", "model."):
                key = key.removeprefix(prefix)
            flat[key] = value
        out: dict[str, Tensor] = {}
        for key, value in flat.items():
            if key.startswith("scaling_layer.") or key == "quantize.codebook_used" or key.endswith(".attn.v_bias"):
                continue
            if key.startswith("encoder_vqkd."):
                out.update(convert_semantic_encoder(key.removeprefix("encoder_vqkd."), value, kind))
                continue
            if key.endswith(".attn.q_bias"):
                v_bias = flat[key.replace("q_bias", "v_bias")]
                key, value = key.replace("q_bias", "qkv.bias"), torch.cat([value, torch.zeros_like(value), v_bias])
            if key == "decoder_vqkd.patch_embed.proj.weight":
                value = value.flatten(1)  # a 1x1 conv on the code grid -> a linear layer on tokens
            old, rep = next(((o, r) for o, r in OFFICIAL_PREFIXES if key.startswith(o)), ("", ""))
            key = rep + key[len(old):]
            out[key.replace(".downsample.conv.", ".resample.").replace(".upsample.conv.", ".resample.")] = value
        return out


OFFICIAL_PREFIXES = [  # first match wins
    ("decoder_vqkd.blocks.", "semantic_decoder.transformer.blocks."),
    ("decoder_vqkd.patch_embed.proj.", "semantic_decoder.patch_embed."),
    ("decoder_vqkd.fc_norm.", "semantic_decoder.norm."),
    ("decoder_vqkd.", "semantic_decoder."),
    ("decode_task_layer.", "semantic_decoder.head."),
    ("encode_task_layer.", "encode_head."),
    ("encoder.", "pixel_encoder."),
    ("decoder.", "pixel_decoder."),
    ("quantize.embedding_vqkd.", "quantizer.codebook.semantic."),
    ("quantize.embedding_vqgan.", "quantizer.codebook.pixel."),
]
CLIP_RENAMES = [
    ("class_embedding", "embeddings.class_embedding"),
    ("positional_embedding", "embeddings.position_embedding.weight"),
    ("conv1.", "embeddings.patch_embedding."),
    ("ln_pre.", "pre_layrnorm."),
    ("ln_post.", "post_layernorm."),
    ("transformer.resblocks.", "encoder.layers."),
    (".attn.out_proj.", ".self_attn.out_proj."),
    (".ln_1.", ".layer_norm1."), (".ln_2.", ".layer_norm2."),
    (".mlp.c_fc.", ".mlp.fc1."), (".mlp.c_proj.", ".mlp.fc2."),
]


def convert_semantic_encoder(key: str, value: Tensor, kind: str) -> dict[str, Tensor]:
    """One official semantic-encoder tensor (OpenAI CLIP or transformers SigLIP names) -> vtok's."""
    if kind == "siglip":
        return {"semantic_encoder." + key.removeprefix("vision_model."): value}
    if key == "proj":
        return {}
    if ".attn.in_proj_" in key:  # fused q,k,v -> transformers' three projections
        layer, kind_ = key.split(".attn.in_proj_")
        layer = layer.replace("transformer.resblocks.", "encoder.layers.")
        return {f"semantic_encoder.{layer}.self_attn.{n}_proj.{kind_}": part for n, part in zip("qkv", value.chunk(3))}
    for old, rep in CLIP_RENAMES:
        key = key.replace(old, rep)
    return {"semantic_encoder." + key: value}


def load_teacher(spec: dict[str, Any], who: str = "tokenflow") -> nn.Module:
    """The frozen teacher: pretrained from spec["source"] (local dir or Hub id, through transformers),
    or random from spec["config"] with spec["seed"] when source is null; `who` names the model in errors."""
    from ..hub import load_frozen_dependency

    model_cls, config_cls = teacher_classes(spec["kind"])
    source = spec["source"]
    if source is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec["seed"])
            model = model_cls(config_cls(**spec["config"]))
    else:
        model = load_frozen_dependency(model_cls.from_pretrained, source, who=who, setting="teacher['source']",
                                       what=f"a transformers {model_cls.__name__} (the frozen teacher)")
        want = config_cls(**spec["config"])
        for field in ("hidden_size", "num_hidden_layers", "patch_size", "num_attention_heads", "intermediate_size", "image_size"):
            if getattr(model.config, field) != getattr(want, field):
                raise ValueError(f"{who}: teacher {source!r} has {field}={getattr(model.config, field)}, but "
                                 f"teacher['config'] says {getattr(want, field)}")
    return model.eval().requires_grad_(False)


# --- the zoo ------------------------------------------------------------------------------------
CLIPB_SCALES = [1, 2, 4, 6, 8, 10, 12, 14, 16]
SIGLIP_SCALES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 22, 27]
PIXEL_CNN = {"channels": 128, "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "z_channels": 256}
ENHANCED_DECODER = {"channels": 256, "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 4, "z_channels": 256}
CLIPB_TEACHER = {  # OpenAI CLIP ViT-B/16, patch tokens after ln_post, targets projected to 512
    "kind": "clip", "source": "openai/clip-vit-base-patch16", "layer": -1, "post_norm": True, "mean": CLIP_MEAN, "std": CLIP_STD,
    "config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
               "image_size": 224, "patch_size": 16, "projection_dim": 512, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
}
SIGLIP_TEACHER = {  # SigLIP so400m/14 at 384, hidden_states[-2] (no final LayerNorm) for features and targets
    "kind": "siglip", "source": "google/siglip-so400m-patch14-384", "layer": -2, "post_norm": False, "mean": HALF, "std": HALF,
    "config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
               "image_size": 384, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
}
OFFICIAL = "ByteFlow-AI/TokenFlow"

register(
    "tokenflow-clipb-32k", TokenFlow,
    {"image_size": 256, "scales": CLIPB_SCALES, "codebook_size": 32768, "semantic_dim": 32, "pixel_dim": 8,
     "pixel_weight": 1.0, "commitment_weight": 0.25, "scale_drop": 0.1, "teacher": CLIPB_TEACHER, "pixel_size": None,
     "pixel_encoder": PIXEL_CNN, "pixel_decoder": ENHANCED_DECODER,
     "semantic_decoder": {"width": 768, "depth": 3, "heads": 12, "grid": 14}},
    # a pickle: vtok.load explains how to convert it once to safetensors
    official=OFFICIAL, official_file="tokenflow_clipb_32k_enhanced.pt",
    description="TokenFlow CLIP ViT-B/16, enhanced pixel decoder, 256 px, 9 scales (817 ids) x 32768 shared codes",
    tags=("image", "2d", "multiscale", "semantic"),
)
register(
    "tokenflow-siglip-32k", TokenFlow,
    {"image_size": 384, "scales": SIGLIP_SCALES, "codebook_size": 32768, "semantic_dim": 32, "pixel_dim": 8,
     "pixel_weight": 1.0, "commitment_weight": 0.25, "scale_drop": 0.1, "teacher": SIGLIP_TEACHER, "pixel_size": 432,
     "pixel_encoder": PIXEL_CNN, "pixel_decoder": PIXEL_CNN,
     "semantic_decoder": {"width": 1152, "depth": 3, "heads": 12, "grid": 27}},
    official=OFFICIAL, official_file="tokenflow_siglip_32k.pt",
    description="TokenFlow SigLIP-so400m/14, 384 px (pixel branch at 432), 15 scales (2227 ids) x 32768 shared codes",
    tags=("image", "2d", "multiscale", "semantic"),
)
TINY_CLIP = {"kind": "clip", "source": None, "seed": 0, "layer": -1, "post_norm": True, "mean": CLIP_MEAN, "std": CLIP_STD,
             "config": {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "image_size": 32, "patch_size": 8, "projection_dim": 16, "hidden_act": "quick_gelu"}}
TINY_CNN = {"channels": 16, "channel_mult": [1, 1, 2, 2], "num_res_blocks": 1, "z_channels": 16}
register(
    "tokenflow-tiny", TokenFlow,
    {"image_size": 32, "scales": [1, 2, 4], "codebook_size": 128, "semantic_dim": 8, "pixel_dim": 4,
     "pixel_weight": 1.0, "commitment_weight": 0.25, "scale_drop": 0.1, "teacher": TINY_CLIP, "pixel_size": None,
     "pixel_encoder": TINY_CNN, "pixel_decoder": TINY_CNN,
     "semantic_decoder": {"width": 32, "depth": 1, "heads": 2, "grid": 4}},
    description="tiny config for tests: 32 px, random tiny CLIP teacher, 3 scales (21 ids) x 128 shared codes",
)
