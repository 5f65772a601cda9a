"""DualToken (Song et al. 2025, "DualToken: Towards Unifying Visual Understanding and Generation with
Dual Visual Vocabularies").

One SigLIP vision transformer reads the image (in [-1,1]) and gives two vocabularies on its G x G
patch grid:

* pixel tokens: the hidden state after a shallow layer (`pixel_layer`, 6), plus `shortcut_weight`
  (0.6) times that after an even shallower one (`shortcut_layer`, 4), each brought down to
  `code_dim` channels by its own attention projection, are residual-quantized;
* semantic tokens: the hidden state after a deep layer (`semantic_layer`, 26), projected the same
  way, is residual-quantized by a second quantizer.

Each quantizer is a depth-`depth` residual quantizer over one codebook of `codebook_size` x
`code_dim` shared by all depths (plain l2 distance, no normalisation), updated by an exponential
moving average (decay 0.99) with unused codes restarted from the batch, as in RQ-VAE; its loss is
the commitment loss averaged over the cumulative sums of the depths (the official pixel quantizer,
type "rq", updates the shared codebook after each depth in training; ours updates both quantizers
once per forward as the official semantic one, "rq_ema", does; encoding is the same). The pixel codes go through an
attention projection back to the width (causal attention over the row-major grid, the official
quirk), bilinear resizing to `decoder_grid`, a residual 1x1/3x3 conv block and an RQ-VAE CNN decoder.
The semantic codes go through a second projection that predicts the frozen SigLIP teacher's hidden
state after `semantic_layer` (`decode_semantic`); the remaining ViT layers, final norm and pooling
head then give the pooled embedding matched to the teacher's.

Ids: long (B, 2, N, D): ids[:, 0] the pixel vocabulary, ids[:, 1] the semantic one, N = G*G
positions row-major, D = depth (coarse to fine). `decode` and `semantic_features` also take the
first q <= D depths, (B, 2, N, q).

Config (plain JSON; dualtoken-siglip-so400m values in brackets):
    image_size         side S of the square input images [384]
    codebook_size      K codes of each vocabulary's codebook [16384]
    code_dim           channels of a code [32]
    depth              D residual depths of each quantizer [8]
    decay              EMA decay of the codebooks [0.99]
    restart_unused     restart codes whose EMA count falls below 1 with batch vectors [true]
    pixel_layer        ViT layer (1-based) whose output makes the pixel tokens [6]
    semantic_layer     ViT layer (1-based) whose output makes the semantic tokens [26]
    shortcut_layer     ViT layer added to the pixel branch, or null for none [4]
    shortcut_weight    its weight [0.6]
    teacher            the SigLIP teacher: {source: Hub id or local directory of a transformers
                       SiglipVisionModel (or SiglipModel) checkpoint, or null for a random one built
                       from config with seed (tests); config: its transformers SiglipVisionConfig
                       dict (the architecture of our ViT); seed}
    decoder            RQ-VAE decoder {channels, channel_mult, num_res_blocks, z_channels}: z_channels =
                       the official decoder_in_channels [128, [1,1,4,4,8], 2, 1024]
    decoder_grid       side of the decoder's input grid (codes are bilinear-resized to it) [24]

Images are read and written in [0,1]; the ViT sees [-1,1] (SigLIP's 0.5/0.5 normalisation, which the
official code applies) and the decoder's [-1,1] output is mapped back.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..nn.conv2d import group_norm
from ..quantizers.base import Quantizer
from ..registry import register, register_model
from ..tokenizer import ImageTokenizer
from .dualcodebook import SIGLIP_TEACHER, PixelDecoder, TeacherSlot, teacher_classes, vision_tower
from .dualcodebook import load_teacher as tokenflow_load_teacher

TEACHER_KEYS = {"source", "config", "seed"}
CNN_KEYS = {"channels", "channel_mult", "num_res_blocks", "z_channels"}


# --- the residual quantizer: one EMA codebook shared by all depths -------------------------------
class SharedResidualVQ(Quantizer):
    """Residual quantization of (B, N, dim) with one codebook (K, dim) used at every depth; ids (B, N, depth).

    Plain l2 nearest code (|r|^2 + |e|^2 - 2 r.e in float32). The codebook is a buffer updated in
    training by EMA of the residuals assigned to each code over all depths (counts and sums decayed by
    `decay`, codes = sums / Laplace-smoothed counts, eps 1e-5), one update per forward; codes whose
    EMA count is below 1 are restarted from random batch residuals. The loss is the commitment loss:
    the mean over depths of mse(z, sum of the first d codes). vtok's `rvq` (vector-quantize-pytorch)
    keeps one codebook per depth and restarts codes differently, so this small module is used instead.

    The EMA sees each depth's own residual (RQ-VAE's intent). The official `rq_ema` caches views of a
    residual it then changes in place, so its sums use the final residual at every depth (its counts
    are right); `ema_update` fed that reproduces it (tests/test_dualtoken.py).
    """

    kind = "shared_rvq"

    def __init__(self, dim: int, codebook_size: int, depth: int, *, decay: float = 0.99, restart_unused: bool = True,
                 eps: float = 1e-5, stats_window: int | None = None):
        super().__init__(dim, codebook_size, depth, stats_window)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"{self.kind}: decay must be in [0, 1), got {decay}")
        self.decay, self.restart_unused, self.eps = decay, restart_unused, eps
        codes = torch.randn(codebook_size, dim)  # nn.Embedding's init, as the official codebook
        self.register_buffer("codebook", codes)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", codes.clone())

    @property
    def multi_codebook(self) -> bool:
        return True

    def nearest(self, r: Tensor) -> Tensor:
        """Ids (M,) of the nearest codes to r (M, dim) float32."""
        e = self.codebook.float()
        d = torch.addmm(r.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1), r, e.t(), alpha=-2.0)
        return d.argmin(dim=-1)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = z.float()
        residual = x.detach().reshape(-1, self.dim).clone()
        total = torch.zeros_like(residual)
        ids, sums, seen = [], [], []
        for _ in range(self.num_codebooks):
            idx = self.nearest(residual)
            if self.training:
                seen.append(residual.clone())
            q = self.codebook[idx].float()
            residual = residual - q
            total = total + q
            ids.append(idx)
            sums.append(total.view_as(x))
        commitment = torch.stack([F.mse_loss(x, s.detach()) for s in sums]).mean()
        if self.training:
            self.ema_update(torch.cat(seen), torch.cat(ids))
        z_q = x + (sums[-1] - x).detach()
        return z_q.to(z.dtype), torch.stack(ids, -1).view(*z.shape[:-1], -1), commitment

    @torch.no_grad()
    def ema_update(self, vectors: Tensor, ids: Tensor) -> None:
        """One EMA step of the codebook from residuals (M, dim) and their ids (M,)."""
        k = self.codebook_size
        counts = torch.bincount(ids, minlength=k).float()
        sums = torch.zeros(k, self.dim, device=vectors.device).index_add_(0, ids, vectors)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        if self.restart_unused:
            if vectors.shape[0] < k:  # tile with a little noise, as RQ-VAE does
                reps = -(-k // vectors.shape[0])
                vectors = vectors.repeat(reps, 1)
                vectors = vectors + torch.rand_like(vectors) * (0.01 / self.dim ** 0.5)
            fresh = vectors[torch.randperm(vectors.shape[0], device=vectors.device)[:k]]
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(fresh, 0)
            used = (self.cluster_size >= 1).float()
            self.embed_sum.mul_(used[:, None]).add_(fresh * (1 - used[:, None]))
            self.cluster_size.mul_(used).add_(1 - used)
        n = self.cluster_size.sum()
        smoothed = n * (self.cluster_size + self.eps) / (n + k * self.eps)
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    def lookup(self, ids: Tensor) -> Tensor:
        """Ids (B, N, q) -> the sum of their codes (B, N, dim)."""
        return self.codebook[ids].sum(-2)


# --- blocks ------------------------------------------------------------------------------------
class ProjectionAttention(nn.Module):
    """Attention that changes the width: heads = max/min of the widths, head size = the smaller width.

    Narrowing (in > out): the heads' outputs are averaged; widening: concatenated. qkv has no key bias
    (query and value biases only, as BEiT), then a linear `proj`.
    """

    def __init__(self, in_dim: int, out_dim: int, causal: bool):
        super().__init__()
        wide, narrow = max(in_dim, out_dim), min(in_dim, out_dim)
        self.heads, self.narrowing, self.causal = wide // narrow, in_dim > out_dim, causal
        self.qkv = nn.Linear(in_dim, 3 * wide, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(wide))
        self.v_bias = nn.Parameter(torch.zeros(wide))
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = rearrange(F.linear(x, self.qkv.weight, bias), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        y = y.mean(1) if self.narrowing else rearrange(y, "b h n d -> b n (h d)")
        return self.proj(y)


class GeGLU(nn.Module):
    """LayerNorm (eps 1e-6), then w2(gelu_tanh(w0 x) * w1 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.w0, self.w1, self.w2 = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        return self.w2(F.gelu(self.w0(x), approximate="tanh") * self.w1(x))


class AttnProjection(nn.Module):
    """Tokens (B, N, in_dim) -> (B, N, out_dim): proj(norm3 x) + attn(norm1 x), then + GeGLU(norm2 .) (hidden 2 x out)."""

    def __init__(self, in_dim: int, out_dim: int, causal: bool = False):
        super().__init__()
        self.norm1, self.norm3, self.norm2 = nn.LayerNorm(in_dim), nn.LayerNorm(in_dim), nn.LayerNorm(out_dim)
        self.attn = ProjectionAttention(in_dim, out_dim, causal)
        self.proj = nn.Linear(in_dim, out_dim)
        self.mlp = GeGLU(out_dim, 2 * out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(self.norm3(x)) + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PostQuantBlock(nn.Module):
    """GroupNorm, SiLU, 1x1 conv (c_in -> c_out), GroupNorm, SiLU, 3x3 conv, plus the input (1x1 conv when widths differ)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 1)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return self.nin_shortcut(x) + h


def run_layer(block: nn.Module, h: Tensor) -> Tensor:
    out = block(h, None)
    return out[0] if isinstance(out, tuple) else out


def pooled(tower: nn.Module, h: Tensor) -> Tensor | None:
    """Final LayerNorm and SigLIP's attention-pooling head (None without a head): (B, N, W) -> (B, W)."""
    head = getattr(tower, "head", None)
    return head(tower.post_layernorm(h)) if head is not None else None


# --- the teacher -------------------------------------------------------------------------------
def check_teacher(teacher: Any) -> dict[str, Any]:
    if not isinstance(teacher, dict) or not isinstance(teacher.get("config"), dict) or not set(teacher) <= TEACHER_KEYS:
        raise ValueError(f"dualtoken: teacher must be a dict with keys {sorted(TEACHER_KEYS)} (config: a transformers "
                         f"SiglipVisionConfig dict), got {teacher!r}")
    return {"source": None, "seed": 0, **teacher}


def load_teacher(teacher: dict[str, Any]) -> nn.Module:
    """The frozen SigLIP teacher (transformers SiglipVisionModel, eval, no gradients): pretrained from
    teacher["source"] (local directory or Hub id in the cache), or random from its config and seed."""
    return tokenflow_load_teacher({**check_teacher(teacher), "kind": "siglip"}, who="dualtoken")


# --- the tokenizer -----------------------------------------------------------------------------
@register_model
class DualToken(ImageTokenizer):
    """Image (B,3,S,S) -> ids (B, 2, G*G, depth): a pixel and a semantic vocabulary from one SigLIP ViT;
    pixel ids -> image, semantic ids -> semantic codebook embeddings / predicted SigLIP features."""

    paper = ("DualToken: Towards Unifying Visual Understanding and Generation with Dual Visual Vocabularies "
             "(Song et al., 2025)")
    family = "dualtoken"

    def __init__(self, *, image_size: int = 384, codebook_size: int = 16384, code_dim: int = 32, depth: int = 8,
                 decay: float = 0.99, restart_unused: bool = True, pixel_layer: int = 6, semantic_layer: int = 26,
                 shortcut_layer: int | None = 4, shortcut_weight: float = 0.6, teacher: dict[str, Any] | None = None,
                 decoder: dict[str, Any] | None = None, decoder_grid: int = 24):
        teacher = check_teacher(dict(teacher or SO400M_384))
        decoder = dict(decoder or RQVAE_DECODER)
        super().__init__(image_size=image_size, codebook_size=codebook_size, code_dim=code_dim, depth=depth, decay=decay,
                         restart_unused=restart_unused, pixel_layer=pixel_layer, semantic_layer=semantic_layer,
                         shortcut_layer=shortcut_layer, shortcut_weight=shortcut_weight, teacher=teacher,
                         decoder=decoder, decoder_grid=decoder_grid)
        self.vit = vision_tower(teacher_classes("siglip")[0](teacher_classes("siglip")[1](**teacher["config"])))
        width, n_layers = self.vit.config.hidden_size, len(self.vit.encoder.layers)
        if image_size != self.vit.config.image_size:
            raise ValueError(f"dualtoken: image_size must be the teacher's image_size ({self.vit.config.image_size}), "
                             f"got {image_size}")
        layers = [pixel_layer, semantic_layer] + ([] if shortcut_layer is None else [shortcut_layer])
        if not all(isinstance(v, int) and 1 <= v <= semantic_layer <= n_layers for v in layers):
            raise ValueError(f"dualtoken: expected 1 <= pixel_layer, shortcut_layer <= semantic_layer <= {n_layers} "
                             f"(the ViT's layers), got {pixel_layer}, {shortcut_layer}, {semantic_layer}")
        if code_dim < 1 or width % code_dim or depth < 1:
            raise ValueError(f"dualtoken: code_dim must divide the ViT width {width} and depth be >= 1, got {code_dim}, {depth}")
        if not isinstance(decoder, dict) or set(decoder) != CNN_KEYS or not decoder["channel_mult"]:
            raise ValueError(f"dualtoken: decoder must be a dict with keys {sorted(CNN_KEYS)}, got {decoder!r}")
        factor = 2 ** (len(decoder["channel_mult"]) - 1)
        if decoder_grid * factor != image_size:
            raise ValueError(f"dualtoken: decoder_grid ({decoder_grid}) times the decoder's upsampling {factor} must be "
                             f"image_size ({image_size})")
        self.prequant_pix = AttnProjection(width, code_dim)
        self.prequant_sem = AttnProjection(width, code_dim)
        if shortcut_layer is not None:
            self.prequant_shortcut = AttnProjection(width, code_dim)
        self.quantizer_pix = SharedResidualVQ(code_dim, codebook_size, depth, decay=decay, restart_unused=restart_unused)
        self.quantizer_sem = SharedResidualVQ(code_dim, codebook_size, depth, decay=decay, restart_unused=restart_unused)
        self.postquant_pix = AttnProjection(code_dim, width, causal=True)
        self.postquant_sem = AttnProjection(code_dim, width, causal=True)
        self.post_quant_conv = PostQuantBlock(width, decoder["z_channels"])
        self.decoder = PixelDecoder(**decoder)
        self._teacher = TeacherSlot()  # the frozen teacher, loaded when first needed, not in the state dict

    # --- what the tokenizer tells about itself ----------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.config["codebook_size"]

    @property
    def grid(self) -> int:
        return self.image_size // self.vit.config.patch_size

    @property
    def num_tokens(self) -> int:
        """Positions per image, G*G (each carries depth ids of each vocabulary)."""
        return self.grid ** 2

    @property
    def num_codebooks(self) -> int:
        """Ids per position: 2 vocabularies x depth."""
        return 2 * self.config["depth"]

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight

    # --- the teacher ----------------------------------------------------------------------------
    def teacher(self) -> nn.Module:
        """The frozen SigLIP teacher, loaded from config["teacher"]["source"] on first use."""
        if not self._teacher:
            self._teacher.append(load_teacher(self.config["teacher"]))
        return self._teacher[0]

    @torch.no_grad()
    def init_from_teacher(self) -> None:
        """Copy the teacher's weights into our ViT (the start of training, as the official code does)."""
        self.vit.load_state_dict(vision_tower(self.teacher()).state_dict())

    @torch.no_grad()
    def teacher_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Images [0,1] -> (the teacher's hidden state after semantic_layer (B, N, W) (hidden_states[-2] for the
        official 27-layer ViT and layer 26), its pooled embedding (B, W)), the semantic targets."""
        tower = vision_tower(self.teacher().to(x.device))
        h = tower.embeddings(2 * x - 1)
        target = None
        for i, block in enumerate(tower.encoder.layers):
            h = run_layer(block, h)
            if i + 1 == self.config["semantic_layer"]:
                target = h
        return target, pooled(tower, h)

    # --- the method, step by step ---------------------------------------------------------------
    def latents(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B,3,S,S) in [0,1] -> (pixel latents, semantic latents), each (B, N, code_dim)."""
        c = self.config
        h = self.vit.embeddings(2 * x - 1)
        pix = shortcut = None
        for i, block in enumerate(self.vit.encoder.layers[: c["semantic_layer"]]):
            h = run_layer(block, h)
            if i + 1 == c["pixel_layer"]:
                pix = self.prequant_pix(h)
            if i + 1 == c["shortcut_layer"]:
                shortcut = self.prequant_shortcut(h)
        if shortcut is not None:
            pix = pix + c["shortcut_weight"] * shortcut
        return pix, self.prequant_sem(h)

    def decode_pixels(self, z_pix: Tensor) -> Tensor:
        """Pixel codes (B, N, code_dim) -> images (B,3,S,S) in [0,1] space, unclamped."""
        # contiguous NCHW as the official code makes it: a strided view sends the convolutions down other kernels
        h = rearrange(self.postquant_pix(z_pix), "b (h w) c -> b c h w", h=self.grid).contiguous()
        g = self.config["decoder_grid"]
        if g != self.grid:
            h = F.interpolate(h, size=(g, g), mode="bilinear")
        return (self.decoder(self.post_quant_conv(h)) + 1) / 2

    def decode_semantic_codes(self, z_sem: Tensor) -> Tensor:
        """Semantic codes (B, N, code_dim) -> predicted teacher hidden state after semantic_layer (B, N, W)."""
        return self.postquant_sem(z_sem)

    def pool(self, h: Tensor) -> Tensor | None:
        """Hidden state after semantic_layer (B, N, W) -> the remaining ViT layers, final norm, head: (B, W)."""
        for block in self.vit.encoder.layers[self.config["semantic_layer"]:]:
            h = run_layer(block, h)
        return pooled(self.vit, h)

    def forward(self, x: Tensor, targets: tuple[Tensor, Tensor | None] | None = None) -> dict[str, Any]:
        """Training step: images (B,3,S,S) in [0,1] -> {
            x_hat (B,3,S,S) [0,1] space, unclamped; ids (B,2,N,D);
            semantic (B,N,W) the semantic codes' prediction of the teacher's hidden state after semantic_layer,
            teacher (B,N,W) that hidden state (from the frozen teacher, or targets[0]);
            pooled (B,W) our ViT's pooled embedding from `semantic`, teacher_pooled (B,W) the teacher's (or targets[1]);
            semantic_mse, semantic_cos (mean 1 - cosine), pooled_mse, pooled_cos;
            semantic_loss = 5 (semantic_mse + semantic_cos) + pooled_mse + pooled_cos (the official stage-1 mix,
            1 - cos for its -cos); loss = loss_pixel + loss_semantic, the quantizers' commitment losses
            (the official total weighs it by 5); stats: code usage, keys pixel_* and semantic_*}.
        No input checks here; `encode` checks."""
        pix, sem = self.latents(x)
        out_pix, out_sem = self.quantizer_pix(pix), self.quantizer_sem(sem)
        semantic = self.decode_semantic_codes(out_sem.z_q)
        ours_pooled = self.pool(semantic)
        teacher, teacher_pooled = self.teacher_features(x) if targets is None else targets
        result = {"x_hat": self.decode_pixels(out_pix.z_q), "ids": torch.stack([out_pix.ids, out_sem.ids], 1),
                  "semantic": semantic, "teacher": teacher, "pooled": ours_pooled, "teacher_pooled": teacher_pooled,
                  "semantic_mse": F.mse_loss(semantic.float(), teacher.float()),
                  "semantic_cos": (1 - F.cosine_similarity(semantic.float(), teacher.float(), dim=-1)).mean()}
        loss = 5 * (result["semantic_mse"] + result["semantic_cos"])
        if ours_pooled is not None and teacher_pooled is not None:
            result["pooled_mse"] = F.mse_loss(ours_pooled.float(), teacher_pooled.float())
            result["pooled_cos"] = (1 - F.cosine_similarity(ours_pooled.float(), teacher_pooled.float(), dim=-1)).mean()
            loss = loss + result["pooled_mse"] + result["pooled_cos"]
        stats = {**{f"pixel_{k}": v for k, v in out_pix.stats.items()},
                 **{f"semantic_{k}": v for k, v in out_sem.stats.items()}}
        return {**result, "semantic_loss": loss, "loss": out_pix.loss + out_sem.loss, "loss_pixel": out_pix.loss,
                "loss_semantic": out_sem.loss, "stats": stats}

    # --- encode / decode ------------------------------------------------------------------------
    def encode(self, x: Tensor, num_tokens: int | None = None) -> Tensor:
        """Images float (B,3,S,S) in [0,1] -> ids long (B, 2, G*G, depth): [:, 0] pixel, [:, 1] semantic
        vocabulary, positions row-major, depths coarse to fine. No codebook update, whatever the mode."""
        self.check_num_tokens(num_tokens)
        self.check_images(x)
        pix, sem = self.latents(x)
        with self.quantizer_pix.inference(), self.quantizer_sem.inference():
            return torch.stack([self.quantizer_pix(pix).ids, self.quantizer_sem(sem).ids], 1)

    def split_ids(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Ids (B, 2, N, q), 1 <= q <= depth -> (pixel ids, semantic ids), each (B, N, q); ValueError naming the layout."""
        n, d = self.num_tokens, self.config["depth"]
        want = f"an integer tensor (B, 2, {n}, q) with 1 <= q <= {d} ([:, 0] pixel ids, [:, 1] semantic ids)"
        if not isinstance(ids, Tensor):
            raise ValueError(f"ids: expected {want}, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids: expected {want}, got dtype {ids.dtype}")
        if ids.ndim != 4 or ids.shape[1] != 2 or ids.shape[2] != n or not 1 <= ids.shape[3] <= d or ids.shape[0] == 0:
            raise ValueError(f"ids: expected {want}, got shape {tuple(ids.shape)}")
        return ids[:, 0], ids[:, 1]

    def decode(self, ids: Tensor) -> Tensor:
        """Ids (B, 2, N, q) (only the pixel vocabulary [:, 0] is read) -> images (B,3,S,S) in [0,1]."""
        return self.decode_pixels(self.quantizer_pix.decode_ids(self.split_ids(ids)[0])).clamp(0.0, 1.0)

    def semantic_features(self, ids: Tensor, per_depth: bool = False) -> Tensor:
        """Ids (B, 2, N, q) (only the semantic vocabulary [:, 1] is read) -> the semantic codebook's embeddings
        summed over the depths, (B, N, code_dim): the input of an understanding model. per_depth=True gives
        each depth's code, (B, N, q, code_dim), as the official get_code_emb_with_depth."""
        sem = self.split_ids(ids)[1]
        if per_depth:
            self.quantizer_sem.decode_ids(sem)  # checks the values
            return self.quantizer_sem.codebook[sem.long()]
        return self.quantizer_sem.decode_ids(sem)

    def decode_semantic(self, ids: Tensor) -> Tensor:
        """Ids (B, 2, N, q) -> the semantic codes' prediction of the teacher's hidden state after semantic_layer (B, N, W)."""
        return self.decode_semantic_codes(self.semantic_features(ids))

    # --- official weights -----------------------------------------------------------------------
    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """The official state dict (songweii/DualToken, RQVAESiglipModel; a training checkpoint's "state_dict")
        -> vtok keys. "module."/"model." prefixes dropped; the SigLIP text tower and logit scale/bias dropped;
        the shared codebook's padding row dropped; decoder levels re-indexed lowest resolution first."""
        levels = len((config.get("decoder") or RQVAE_DECODER)["channel_mult"])
        out: dict[str, Tensor] = {}
        for key, value in state.items():
            for prefix in ("module.", "model."):
                key = key.removeprefix(prefix)
            if key.startswith("siglip_model."):
                key = key.removeprefix("siglip_model.")
                if not key.startswith("vision_model."):
                    continue  # text tower, logit_scale, logit_bias
                key = "vit." + key.removeprefix("vision_model.").removeprefix("vision_model.")
            elif key.endswith(".zero_k_bias"):
                continue
            elif key.startswith(("quantizer_pix.", "quantizer_sem.")):
                name, _, depth, what = key.split(".")  # <quantizer>.codebooks.<depth>.<what>
                if depth != "0":
                    continue  # the same shared codebook at every depth
                key, value = {"weight": (f"{name}.codebook", value[:-1]), "cluster_size_ema": (f"{name}.cluster_size", value),
                              "embed_ema": (f"{name}.embed_sum", value)}[what]
            elif key.startswith("decoder.mid."):
                key = key.replace("mid.block_1.", "mid.0.").replace("mid.attn_1.", "mid.1.").replace("mid.block_2.", "mid.2.")
            elif key.startswith("decoder.up."):
                _, _, level, kind, rest = key.split(".", 4)
                new = f"decoder.conv_blocks.{levels - 1 - int(level)}"
                if kind == "upsample":
                    key = f"{new}.resample.{rest.removeprefix('conv.')}"
                else:
                    key = f"{new}.{'res' if kind == 'block' else 'attn'}.{rest}"
            out[key] = value
        return out


# --- the zoo ------------------------------------------------------------------------------------
SO400M_384 = {"source": "google/siglip2-so400m-patch14-384", "seed": 0,
              "config": dict(SIGLIP_TEACHER["config"])}
SO400M_256 = {"source": "google/siglip2-so400m-patch16-256", "seed": 0,
              "config": {**SO400M_384["config"], "image_size": 256, "patch_size": 16}}
RQVAE_DECODER = {"channels": 128, "channel_mult": [1, 1, 4, 4, 8], "num_res_blocks": 2, "z_channels": 1024}
# the official code is on GitHub; its weights (a training-checkpoint pickle, "state_dict" inside) are on
# Google Drive, not on the Hub: vtok.load explains how to convert one to safetensors and pass it.
OFFICIAL = "songweii/DualToken"
PAPER = {"codebook_size": 16384, "code_dim": 32, "decay": 0.99, "restart_unused": True, "pixel_layer": 6,
         "semantic_layer": 26, "shortcut_layer": 4, "shortcut_weight": 0.6, "decoder": RQVAE_DECODER}

register(
    "dualtoken-siglip-so400m", DualToken,
    {**PAPER, "image_size": 384, "depth": 8, "teacher": SO400M_384, "decoder_grid": 24},
    official=OFFICIAL, official_file="epoch_n.pt",
    description="DualToken SigLIP2-so400m/14 at 384 (model_config_siglip_384_rvq8): 27x27 positions x (pixel, semantic) "
                "x depth 8 over 16384 x 32 codes; weights: Google Drive pickle, convert to safetensors",
    tags=("image", "2d", "residual", "semantic"),
)
register(
    "dualtoken-siglip-so400m-256", DualToken,
    {**PAPER, "image_size": 256, "depth": 4, "teacher": SO400M_256, "decoder_grid": 16},
    official=OFFICIAL, official_file="epoch_n.pt",
    description="DualToken SigLIP2-so400m/16 at 256 (model_config_siglip_256_rvq4): 16x16 positions x (pixel, semantic) "
                "x depth 4 over 16384 x 32 codes",
    tags=("image", "2d", "residual", "semantic"),
)
TINY_SIGLIP = {"source": None, "seed": 0,
               "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
                          "image_size": 32, "patch_size": 8, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}}
register(
    "dualtoken-tiny", DualToken,
    {"image_size": 32, "codebook_size": 64, "code_dim": 8, "depth": 3, "decay": 0.99, "restart_unused": True,
     "pixel_layer": 2, "semantic_layer": 3, "shortcut_layer": 1, "shortcut_weight": 0.6, "teacher": TINY_SIGLIP,
     "decoder": {"channels": 32, "channel_mult": [1, 1], "num_res_blocks": 0, "z_channels": 32}, "decoder_grid": 16},
    description="tiny config for tests: 32 px, random tiny SigLIP (4 layers), 4x4 positions x 2 x depth 3 over 64 codes",
)
