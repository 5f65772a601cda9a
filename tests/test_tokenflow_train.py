"""TokenFlowTraining (vtok/train/tokenflow_module.py): both losses learn, the frozen teacher stays out of the
optimizer, the EMA copy and the checkpoints, the export loads, and a stopped run resumes to the same weights."""
import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

import vtok
from vtok import assets
from vtok.train import ImageDataModule, TokenFlowTraining, WeightEMA
from vtok.train.cli import fit as cli_fit

from conftest import (StopAt, assert_same_exported_weights, assert_teacher_outside_fit, assert_teacher_outside_module,
                      write_crop_dirs)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tokenflow" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    """Random crops of the sample photos: 16 to train on, 4 held out (from other photos)."""
    return write_crop_dirs(tmp_path_factory.mktemp("tf_images"), 4, 2)


class FirstBatch(L.Callback):
    """Records the batch count at the first training batch of a fit (0 fresh, k after resuming at batch k)."""

    seen = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.seen is None:
            self.seen = pl_module.batches_seen


def fit(run, image_dirs, max_steps, stop_at=None, resume=False, **model_args):
    """A tiny TokenFlow run in `run` (logs, checkpoints every step, EMA, export) -> (module, trainer)."""
    L.seed_everything(0)
    module = TokenFlowTraining("tokenflow-tiny", lr=1e-3, export_dir=str(run / "export"), **model_args)
    data = ImageDataModule(train_dir=str(image_dirs / "train"), val_dir=str(image_dirs / "test"), image_size=32, batch_size=4)
    callbacks = [L.pytorch.callbacks.ModelCheckpoint(dirpath=run / "checkpoints", save_last=True, every_n_train_steps=1, save_top_k=0),
                 WeightEMA(decay=0.9), FirstBatch()] + ([StopAt(stop_at)] if stop_at else [])
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, val_check_interval=4, check_val_every_n_epoch=None,
                        log_every_n_steps=1, deterministic=True, enable_progress_bar=False, enable_model_summary=False,
                        logger=L.pytorch.loggers.CSVLogger(run, name="logs", version=0), callbacks=callbacks,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data, ckpt_path=str(run / "checkpoints" / "last.ckpt") if resume else None)
    return module, trainer


def test_steps_on_a_batch_lower_both_losses_and_never_touch_the_teacher():
    torch.manual_seed(0)
    module = TokenFlowTraining("tokenflow-tiny", gan_weight=0.5, adaptive_gan_weight=True)
    teacher = assert_teacher_outside_module(module, module.model.semantic_encoder)
    before = [p.detach().clone() for p in teacher]
    x = assets.sample_crops(8, 32, seed=0)
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    history = []
    for _ in range(12):
        loss, logs = module.generator_loss(x, module.model(x))
        assert {"rec", "semantic", "quantizer", "gan_g", "gan_weight"} <= logs.keys()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((logs["rec"].item(), logs["semantic"].item()))
    assert history[-1][0] < 0.7 * history[0][0] and history[-1][1] < 0.7 * history[0][1], history
    assert all(p.grad is None and not p.requires_grad for p in teacher)
    assert all(torch.equal(a, p) for a, p in zip(before, teacher))
    l2 = TokenFlowTraining("tokenflow-tiny", semantic_loss="l2")
    out = l2.model(x)
    torch.testing.assert_close(l2.semantic_loss(out), torch.nn.functional.mse_loss(out["semantic"], out["teacher"]))


def test_only_tokenflow_models_and_known_semantic_losses():
    with pytest.raises(ValueError, match="semantic_loss must be one of"):
        TokenFlowTraining("tokenflow-tiny", semantic_loss="kl")
    with pytest.raises(ValueError, match="not a TokenFlow model"):
        TokenFlowTraining("vqgan-tiny")


def test_fit_logs_exports_the_ema_and_resumes_to_the_same_weights(tmp_path, image_dirs):
    # GAN from batch 2 on: Lightning counts 2 optimizer steps per batch from then, so 8 steps = 5 batches
    gan = {"gan_weight": 0.5, "gan_start": 2, "disc_channels": 8}
    whole, trainer = fit(tmp_path / "whole", image_dirs, 8, **gan)
    assert whole.batches_seen == 5
    ema = next(c for c in trainer.callbacks if isinstance(c, WeightEMA))
    ckpt = assert_teacher_outside_fit(whole, trainer, ema, tmp_path / "whole" / "checkpoints" / "last.ckpt")
    assert ckpt["vtok"]["batches_seen"] == 5
    rows = list(csv.DictReader(open(tmp_path / "whole" / "logs" / "version_0" / "metrics.csv")))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"train/semantic", "train/rec", "train/gan_g", "val/psnr", "val/semantic", "codebook/usage"} <= logged
    # the export: the EMA weights, loadable, teacher-free
    exported = load_file(str(tmp_path / "whole" / "export" / "model.safetensors"))
    assert not any("teacher" in k for k in exported)
    torch.testing.assert_close(exported["pixel_decoder.conv_out.weight"], ema._average_model.module.model.last_layer.detach())
    tok = vtok.load(tmp_path / "whole" / "export")
    assert tok.encode(assets.sample_crops(2, 32)).shape == (2, tok.num_tokens)
    # stopped after 3 batches (the GAN already on), then resumed from last.ckpt by a new process-like run
    fit(tmp_path / "split", image_dirs, 8, stop_at=3, **gan)
    resumed, trainer = fit(tmp_path / "split", image_dirs, 8, resume=True, **gan)
    assert next(c for c in trainer.callbacks if isinstance(c, FirstBatch)).seen == 3 and resumed.batches_seen == 5
    assert_same_exported_weights(tmp_path / "whole", tmp_path / "split")


def test_tiny_recipe_trains_through_the_cli_with_the_gan_on(tmp_path, image_dirs, monkeypatch):
    """`vtok fit --config recipes/tokenflow/tiny-cpu.yaml` (LightningCLI saves only the given init args as hparams)."""
    monkeypatch.chdir(tmp_path)
    cli_fit(["--config", str(RECIPE), "--data.init_args.train_dir", str(image_dirs / "train"),
             "--data.init_args.val_dir", str(image_dirs / "test"), "--data.init_args.batch_size", "4",
             "--trainer.max_steps", "5", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false", "--model.init_args.gan_weight", "0.5",
             "--model.init_args.gan_start", "1", "--model.init_args.disc_channels", "8"])
    run = tmp_path / "runs" / "tokenflow-tiny-cpu"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)  # our own checkpoint, test only
    assert ckpt["vtok"]["batches_seen"] == 3 and len(ckpt["optimizer_states"]) == 2
    assert vtok.load(run / "export").config == vtok.registry.get_entry("tokenflow-tiny").config
