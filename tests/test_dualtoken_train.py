"""DualTokenTraining (vtok/train/dualtoken_module.py): the reconstruction and the semantic loss both learn, the frozen
teacher stays out of the optimizer, the EMA copy, the checkpoints and the export, the export loads, and the tiny
recipe runs through the CLI."""
import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

import vtok
from vtok import assets
from vtok.train import DualTokenTraining, ImageDataModule, WeightEMA
from vtok.train.cli import fit as cli_fit
from vtok.train.dualtoken_module import semantic_mix

from conftest import (StopAt, assert_same_exported_weights, assert_teacher_outside_fit, assert_teacher_outside_module,
                      write_crop_dirs)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dualtoken" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    """Random crops of the sample photos: 8 to train on, 4 held out (from other photos)."""
    return write_crop_dirs(tmp_path_factory.mktemp("dt_images"), 2, 2)


def test_steps_on_a_batch_lower_both_losses_and_never_touch_the_teacher():
    torch.manual_seed(0)
    module = DualTokenTraining("dualtoken-tiny", gan_weight=0.75, disc_channels=8)
    teacher = assert_teacher_outside_module(module, module.model.vit)
    before = [p.detach().clone() for p in teacher]
    x = assets.sample_crops(8, 32, seed=0)
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    history = []
    for _ in range(10):
        out = module.model(x)
        loss, logs = module.generator_loss(x, out)
        assert {"rec", "semantic", "quantizer", "commitment_pixel", "commitment_semantic", "gan_g", "gan_weight"} <= logs.keys()
        assert 0.3 <= logs["gan_weight"].item() <= 10.0  # the official clamp
        torch.testing.assert_close(loss.detach(), 20 * torch.nn.functional.mse_loss(out["x_hat"], x).detach()
                                   + 5 * out["loss"].detach() + out["semantic_loss"].detach()
                                   + 0.75 * logs["gan_weight"] * logs["gan_g"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((logs["rec"].item(), logs["semantic"].item()))
    assert history[-1][0] < 0.7 * history[0][0] and history[-1][1] < 0.7 * history[0][1], history
    assert all(p.grad is None and not p.requires_grad for p in teacher)
    assert all(torch.equal(a, p) for a, p in zip(before, teacher))
    # validation measures the same mix from the ids (eval: no codebook update)
    module.eval()
    with torch.no_grad():
        out = module.model(x)
        x_hat, semantic, cos = module.held_out_losses(x)
    torch.testing.assert_close(semantic, out["semantic_loss"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cos, out["semantic_cos"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_hat, out["x_hat"].clamp(0, 1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(semantic_mix(out["semantic"], out["teacher"], None, None),
                               5 * (out["semantic_mse"] + out["semantic_cos"]))


def test_only_dualtoken_models_and_a_valid_clamp():
    with pytest.raises(ValueError, match="not a DualToken model"):
        DualTokenTraining("vqgan-tiny")
    with pytest.raises(ValueError, match="adaptive_weight_range"):
        DualTokenTraining("dualtoken-tiny", adaptive_weight_range=(1.0, 0.5))


def fit(run, image_dirs, max_steps=6, stop_at=None, resume=False):
    """A tiny DualToken run in `run` (GAN from batch 2 on, logs, checkpoints every step, EMA, export) -> (module, trainer, ema)."""
    L.seed_everything(0)
    module = DualTokenTraining("dualtoken-tiny", lr=1e-3, gan_weight=0.75, gan_start=2, disc_channels=8,
                               export_dir=str(run / "export"))
    data = ImageDataModule(train_dir=str(image_dirs / "train"), val_dir=str(image_dirs / "test"), image_size=32, batch_size=4)
    ema = WeightEMA(decay=0.9)
    callbacks = [L.pytorch.callbacks.ModelCheckpoint(dirpath=run / "checkpoints", save_last=True, every_n_train_steps=1,
                                                     save_top_k=0), ema] + ([StopAt(stop_at)] if stop_at else [])
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, val_check_interval=2, check_val_every_n_epoch=None,
                        log_every_n_steps=1, deterministic=True, enable_progress_bar=False, enable_model_summary=False,
                        logger=L.pytorch.loggers.CSVLogger(run, name="logs", version=0), num_sanity_val_steps=0,
                        callbacks=callbacks)
    trainer.fit(module, datamodule=data, ckpt_path=str(run / "checkpoints" / "last.ckpt") if resume else None)
    return module, trainer, ema


def test_fit_logs_exports_the_ema_without_the_teacher_and_resumes(tmp_path, image_dirs):
    # GAN from batch 2 on: Lightning counts 2 optimizer steps per batch from then, so 6 steps = 4 batches
    module, trainer, ema = fit(tmp_path, image_dirs)
    assert module.batches_seen == 4
    ckpt = assert_teacher_outside_fit(module, trainer, ema, tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["vtok"]["batches_seen"] == 4
    generator = trainer.optimizers[0].param_groups
    assert all(p.ndim < 2 for p in generator[0]["params"]) and generator[0]["weight_decay"] == 0.0  # official groups
    assert all(p.ndim >= 2 for p in generator[1]["params"]) and generator[1]["weight_decay"] == module.hparams.weight_decay
    assert sum(len(g["params"]) for g in generator) == len(list(module.model.parameters()))
    rows = list(csv.DictReader(open(tmp_path / "logs" / "version_0" / "metrics.csv")))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"train/semantic", "train/rec", "train/gan_g", "val/psnr", "val/semantic", "val/semantic_cos",
            "codebook/pixel_usage", "codebook/semantic_usage"} <= logged
    # the export: the EMA weights, loadable, teacher-free
    exported = load_file(str(tmp_path / "export" / "model.safetensors"))
    assert not any("teacher" in k for k in exported)
    torch.testing.assert_close(exported["decoder.conv_out.weight"], ema._average_model.module.model.last_layer.detach())
    tok = vtok.load(tmp_path / "export")
    assert tok.config == vtok.registry.get_entry("dualtoken-tiny").config
    assert tok.encode(assets.sample_crops(2, 32)).shape == (2, 2, tok.num_tokens, tok.config["depth"])
    # stopped after 3 batches (the GAN already on), then resumed from last.ckpt: the same exported weights
    fit(tmp_path / "split", image_dirs, stop_at=3)
    resumed, _, _ = fit(tmp_path / "split", image_dirs, resume=True)
    assert resumed.batches_seen == 4
    assert_same_exported_weights(tmp_path, tmp_path / "split")


def test_tiny_recipe_trains_through_the_cli(tmp_path, image_dirs, monkeypatch):
    """`vtok fit --config recipes/dualtoken/tiny-cpu.yaml` (LightningCLI saves only the given init args as hparams)."""
    monkeypatch.chdir(tmp_path)
    cli_fit(["--config", str(RECIPE), "--data.init_args.train_dir", str(image_dirs / "train"),
             "--data.init_args.val_dir", str(image_dirs / "test"), "--data.init_args.batch_size", "4",
             "--trainer.max_steps", "3", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"])
    run = tmp_path / "runs" / "dualtoken-tiny-cpu"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)  # our own checkpoint, test only
    assert ckpt["vtok"]["batches_seen"] == 3 and len(ckpt["optimizer_states"]) == 1
    assert not any("teacher" in k for k in ckpt["state_dict"])
    assert vtok.load(run / "export").config == vtok.registry.get_entry("dualtoken-tiny").config
