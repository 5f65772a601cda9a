"""Lightning training of FlexTok: the rectified-flow loss of the decoder, nested dropout and FSQ inside the model,
plus optional REPA (representation alignment of a decoder block to a frozen DINOv2 teacher)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from ..registry import create, get_entry
from .base import TokenizerTraining

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINOv2's input normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
TEACHER_KINDS = ("dinov2",)


class FrozenTeacher:
    """Holds the frozen REPA teacher outside the LightningModule's module tree, so it is in none of its
    parameters(), state_dict() (checkpoints, export), optimizer or train()/eval() switches. A deepcopy (the
    EMA callback's AveragedModel deep-copies the whole LightningModule) shares the same teacher instead of
    copying it, so the EMA model neither holds nor averages it."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenTeacher:
        return self


def teacher_spec(teacher: str | dict[str, Any]) -> dict[str, Any]:
    """A REPA teacher as a full spec: {kind: "dinov2", source: Hub id | local dir | None, config: transformers
    Dinov2Config kwargs (builds a random teacher when source is None; checked against a loaded one), seed,
    image_size: the teacher's input side (None: decoder grid x teacher patch size)}. A string is a source."""
    spec = {"kind": "dinov2", "source": teacher, "config": {}} if isinstance(teacher, (str, Path)) else dict(teacher)
    unknown = set(spec) - {"kind", "source", "config", "seed", "image_size"}
    if unknown:
        raise ValueError(f"flextok REPA: unknown repa_teacher keys {sorted(unknown)}; expected kind, source, config, seed, image_size")
    spec.setdefault("kind", "dinov2")
    spec.setdefault("source", None)
    spec.setdefault("config", {})
    spec.setdefault("seed", 0)
    spec.setdefault("image_size", None)
    if spec["kind"] not in TEACHER_KINDS:
        raise ValueError(f"flextok REPA: repa_teacher kind must be one of {TEACHER_KINDS}, got {spec['kind']!r}")
    if spec["source"] is None and not spec["config"]:
        raise ValueError("flextok REPA: repa_teacher needs a source (Hub id or local directory of a transformers "
                         "Dinov2Model, e.g. 'facebook/dinov2-large') or, for a random teacher, a config")
    return spec


def load_teacher(spec: dict[str, Any]) -> nn.Module:
    """The frozen REPA teacher (transformers Dinov2Model, eval mode, no gradients): pretrained from spec["source"]
    (local directory or Hub id in the local cache), or random from spec["config"] with spec["seed"] when source is None."""
    from transformers import Dinov2Config, Dinov2Model

    from ..hub import load_frozen_dependency

    source = spec["source"]
    if source is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec["seed"])
            model = Dinov2Model(Dinov2Config(**spec["config"]))
        return model.eval().requires_grad_(False)
    model = load_frozen_dependency(Dinov2Model.from_pretrained, source, who="flextok REPA", setting="repa_teacher",
                                   what="a transformers Dinov2Model (the REPA teacher, e.g. facebook/dinov2-large)")
    want = Dinov2Config(**spec["config"]) if spec["config"] else None
    for field in ("hidden_size", "num_hidden_layers", "patch_size") if want is not None else ():
        if field in spec["config"] and getattr(model.config, field) != getattr(want, field):
            raise ValueError(f"flextok REPA: teacher {source!r} has {field}={getattr(model.config, field)}, but "
                             f"repa_teacher['config'] says {getattr(want, field)}")
    return model.eval().requires_grad_(False)


def load_vae_state(source: str) -> tuple[dict[str, torch.Tensor], float | None]:
    """(state dict, config scaling_factor) of a diffusers AutoencoderKL from a local directory or a Hub id in the cache."""
    from diffusers import AutoencoderKL

    from ..hub import load_frozen_dependency

    vae = load_frozen_dependency(lambda src: AutoencoderKL.from_pretrained(src, low_cpu_mem_usage=False), source,
                                 who="flextok", setting="vae_source", what="a diffusers AutoencoderKL (the frozen VAE)")
    return vae.state_dict(), getattr(vae.config, "scaling_factor", None)


class FlexTokTraining(TokenizerTraining):
    """Trains a registry FlexTok (config keys overridden by `overrides`) on images (B,3,S,S) in [0,1].

    The loss is the model's own: MSE between the decoder's velocity and noise - x0 at logit-normal
    times, with nested dropout of the registers and null-condition dropout for guidance. Validation
    decodes the first k ids for each k in `val_tokens` with `val_steps` Euler steps (seeded) and logs
    `val/psnr_k{k}`; `val/psnr` is the one at all tokens. The EMA callback's weights are validated and exported.

    `vae_source` (a diffusers AutoencoderKL Hub id or directory, e.g. EPFL-VILAB/flextok_vae_c16) loads the frozen
    VAE's weights (strictly) at construction; unless `overrides` sets latent_scale, the VAE config's
    scaling_factor becomes the model's latent_scale.

    REPA (`repa_teacher`, a Hub id / local directory of a transformers Dinov2Model, or a spec dict, see
    `teacher_spec`): the loss adds `repa_weight` x the negative cosine similarity, averaged over the decoder's
    patch tokens, between the model's REPA projector on decoder block `repa_layer` and the frozen teacher's
    patch features (after its final LayerNorm) of the clean image. The teacher sees the image normalised with the
    ImageNet mean/std, bicubic-resized to (decoder grid x teacher patch size) so that its patch grid is the
    decoder's token grid; a teacher `image_size` giving another grid has its features bilinearly interpolated to
    the decoder grid. The model's `repa_dim` must equal the teacher's hidden size. The teacher is frozen, in eval
    mode, and kept out of the module tree (optimizer, checkpoints, EMA, export): see `FrozenTeacher`.
    """

    def __init__(
        self,
        tokenizer: str,
        overrides: dict[str, Any] | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_floor: float = 0.1,
        grad_clip: float = 1.0,
        val_tokens: list[int] | None = None,
        val_steps: int = 10,
        export_dir: str | None = None,
        repa_teacher: str | dict[str, Any] | None = None,
        repa_weight: float = 0.5,
        vae_source: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.hparams.gan_start = 0  # no discriminator: the schedule spans every step
        overrides = dict(overrides or {})
        vae_state = None
        if vae_source is not None:
            if get_entry(tokenizer).config.get("vae") is None and overrides.get("vae") is None:
                raise ValueError(f"FlexTokTraining: vae_source {vae_source!r} given, but {tokenizer!r} works on pixels (vae: null)")
            vae_state, scaling = load_vae_state(str(vae_source))
            if "latent_scale" not in overrides and scaling is not None:
                overrides["latent_scale"] = float(scaling)
        self.model = create(tokenizer, **overrides)
        if not getattr(self.model, "variable_length", False) or not hasattr(self.model, "sample_keep"):
            raise ValueError(f"FlexTokTraining: {tokenizer!r} is not a FlexTok model")
        if vae_state is not None:
            self.model.vae.load_state_dict(vae_state, strict=True)
        r = self.model.num_tokens
        self.val_tokens = sorted({self.model.check_num_tokens(k) for k in (val_tokens or [1, max(1, r // 4), r])})
        self.val_psnr = torch.nn.ModuleDict({str(k): PeakSignalNoiseRatio(data_range=1.0) for k in self.val_tokens})
        self.repa: FrozenTeacher | None = None
        if repa_teacher is not None:
            spec = teacher_spec(repa_teacher)
            teacher = load_teacher(spec)
            hidden, repa_dim = teacher.config.hidden_size, self.model.config.get("repa_dim")
            if repa_dim != hidden:
                raise ValueError(f"FlexTokTraining: the model's repa_dim ({repa_dim}) must equal the REPA teacher's "
                                 f"hidden_size ({hidden}); set overrides.repa_dim: {hidden}")
            if not 0 <= self.model.config["repa_layer"] < self.model.config["decoder"]["depth"]:
                raise ValueError(f"FlexTokTraining: repa_layer {self.model.config['repa_layer']} is not a decoder block "
                                 f"(0..{self.model.config['decoder']['depth'] - 1})")
            self.repa = FrozenTeacher(teacher)
            self.repa_image_size = spec["image_size"] or self.model.grid * teacher.config.patch_size

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B,3,S,S) in [0,1] -> the teacher's patch features (B, grid*grid, hidden) on the decoder's token grid."""
        teacher = self.repa.module
        param = next(teacher.parameters())
        if param.device != x.device:
            teacher.to(x.device)
            param = next(teacher.parameters())
        mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        size = self.repa_image_size
        x = F.interpolate((x - mean) / std, size=(size, size), mode="bicubic", align_corners=False)
        feats = teacher(pixel_values=x.to(param.dtype)).last_hidden_state[:, 1:]  # after the final LayerNorm, no CLS
        g, grid = size // teacher.config.patch_size, self.model.grid
        if g != grid:
            feats = feats.transpose(1, 2).reshape(feats.shape[0], -1, g, g)
            feats = F.interpolate(feats.float(), size=(grid, grid), mode="bilinear", align_corners=False)
            feats = feats.flatten(2).transpose(1, 2)
        return feats

    def repa_loss(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Negative cosine similarity of the projected decoder patch tokens (B,N,D) and the teacher's features, mean over tokens."""
        target = self.teacher_features(x)
        return -(F.normalize(features.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(-1).mean()

    def training_step(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        opt, _ = self.split_optimizers()
        out = self.model(x)
        loss, logs = out["loss"], {"flow": out["loss"].detach()}
        if self.repa is not None:
            repa = self.repa_loss(out["repa_features"], x)
            loss = loss + self.hparams.repa_weight * repa
            logs["repa"] = repa.detach()
        self.backward_step(opt, loss)
        self.finish_step()
        return self.log_step(loss, logs, out["stats"])

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        ids = self.model.encode(x)
        for k in self.val_tokens:
            x_hat = self.model.decode(ids[:, :k], steps=self.hparams.val_steps, seed=batch_idx)
            self.val_psnr[str(k)].update(x_hat, x)
            self.log(f"val/psnr_k{k}", self.val_psnr[str(k)], on_epoch=True, sync_dist=True)
        self.log("val/psnr", self.val_psnr[str(self.val_tokens[-1])], prog_bar=True, on_epoch=True, sync_dist=True)
