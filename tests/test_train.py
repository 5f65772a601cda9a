"""`vtok fit` on each tiny image recipe: learns on real images, a killed run resumes to the same
weights, two DDP ranks end equal; and TiTok's two-stage scheme runs stage 1 then stage 2."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torchmetrics.functional.image import peak_signal_noise_ratio

import vtok
from vtok import assets
from vtok.train.image_module import warmup_cosine

from conftest import assert_same_exported_weights, write_crop_dirs, kill_after_first_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FAMILIES = ["vqgan", "titok", "onedpiece", "flextok"]  # recipes/<family>/tiny-cpu.yaml


def recipe(family: str) -> Path:
    return RECIPES / family / "tiny-cpu.yaml"


def run_name(family: str) -> str:
    return Path(yaml.safe_load(recipe(family).read_text())["model"]["init_args"]["export_dir"]).parent.name


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    """Random crops of four sample photos to train on; crops of two other photos held out."""
    return write_crop_dirs(tmp_path_factory.mktemp("images"), 24, 4)


def fit_command(family, image_dirs, max_steps):
    return [
        sys.executable, "-m", "vtok.cli", "fit", "--config", str(recipe(family)),
        "--data.init_args.train_dir", str(image_dirs / "train"), "--data.init_args.val_dir", str(image_dirs / "test"),
        "--data.init_args.batch_size", "8", "--trainer.max_steps", str(max_steps),
        "--trainer.val_check_interval", "10", "--trainer.log_every_n_steps", "5",
        "--trainer.enable_progress_bar", "false",
    ]


def run_fit(family, cwd, image_dirs, max_steps, extra=()):
    result = subprocess.run(fit_command(family, image_dirs, max_steps) + list(extra), cwd=cwd, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "runs" / run_name(family)


def held_out_psnr(tok, image_dirs):
    x = torch.stack([assets.load_image(p, size=32) for p in sorted((image_dirs / "test").iterdir())])
    with torch.no_grad():
        return peak_signal_noise_ratio(tok.decode(tok.encode(x)), x, data_range=1.0).item()


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_learns_and_exports(family, tmp_path, image_dirs):
    run = run_fit(family, tmp_path, image_dirs, max_steps=200)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    trained = vtok.load(run / "export")
    model_args = yaml.safe_load(recipe(family).read_text())["model"]["init_args"]
    torch.manual_seed(0)  # step 0: the recipe's model, its codebook k-means-initialised on a training batch
    fresh = vtok.create(model_args["tokenizer"], **model_args.get("overrides", {}))
    fresh(torch.stack([assets.load_image(p, size=32) for p in sorted((image_dirs / "train").iterdir())[:16]]))
    fresh.eval()
    before, after = held_out_psnr(fresh, image_dirs), held_out_psnr(trained, image_dirs)
    print(f"{family}: held-out PSNR: untrained {before:.2f} dB -> trained {after:.2f} dB")
    # a flow decoder samples its reconstruction from noise: after 200 steps it gains less PSNR than a regression one
    assert after > before + (1.0 if family == "flextok" else 2.0)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)  # our own checkpoint, test only
    assert len(ckpt["optimizer_states"]) == 1 and ckpt["vtok"]["batches_seen"] == 200
    assert any("WeightEMA" in k for k in ckpt["callbacks"])


@pytest.mark.parametrize("family", FAMILIES)
def test_killed_run_resumes_to_the_same_weights(family, tmp_path, image_dirs, monkeypatch):
    # one thread in both runs: multi-threaded CPU reductions (e.g. the EMA codebook's scatter-adds) may sum in a
    # different order from run to run, which a bitwise comparison would read as a resume bug
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    whole = run_fit(family, tmp_path / "whole", image_dirs, max_steps=100)
    kill_after_first_checkpoint(fit_command(family, image_dirs, 100), tmp_path / "killed",
                                tmp_path / "killed" / "runs" / run_name(family))
    resumed = run_fit(family, tmp_path / "killed", image_dirs, max_steps=100)
    assert_same_exported_weights(whole, resumed)


def test_warmup_cosine():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, floor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)


@pytest.mark.parametrize("family", ["vqgan", "titok", "flextok"])  # onedpiece is titok's network: its DDP path is the same
def test_two_gloo_ranks_train_the_tiny_recipe_to_identical_weights(family, tmp_path, image_dirs):
    dump = tmp_path / "weights"
    cmd = fit_command(family, image_dirs, 20) + [
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.sync_batchnorm", "true",
        "--trainer.callbacks+", '{"class_path": "rank_dump.DumpWeights", "init_args": {"out": "%s"}}' % dump,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (load_file(str(dump / f"rank{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys()
    assert family == "flextok" or any("_codebook.embed" in k for k in a)  # FSQ has no codebook to keep in sync
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_titok_two_stage_training(tmp_path, image_dirs):
    """Stage 1: proxy-code cross-entropy against a frozen VQGAN; stage 2: decoders on pixels, encoder frozen."""
    import csv

    torch.manual_seed(0)
    proxy = vtok.create("vqgan-tiny", channels=32, quantizer={"kind": "vq", "codebook_size": 1024})
    proxy.save_pretrained(tmp_path / "proxy")
    legacy = ["--model.init_args.tokenizer", "titok-tiny-legacy", "--trainer.max_steps", "60"]
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2").mkdir()
    stage1 = run_fit("titok", tmp_path / "s1", image_dirs, 60, legacy + [
        "--model.init_args.proxy_tokenizer", str(tmp_path / "proxy"), "--model.init_args.freeze", "[pixel_decoder, proxy_codebook]",
        "--model.init_args.l1_weight", "0", "--model.init_args.l2_weight", "0",
    ])
    rows = [r for r in csv.DictReader(open(stage1 / "logs" / "version_0" / "metrics.csv")) if r.get("train/proxy_ce")]
    first, last = float(rows[0]["train/proxy_ce"]), float(rows[-1]["train/proxy_ce"])
    assert last < first - 0.5, (first, last)
    s1 = load_file(str(stage1 / "export" / "model.safetensors"))
    # copied, then frozen (exported weights are an EMA: of a constant, up to float rounding)
    torch.testing.assert_close(s1["pixel_decoder.conv_out.weight"], proxy.decoder.conv_out.weight.detach(), atol=1e-6, rtol=0)
    stage2 = run_fit("titok", tmp_path / "s2", image_dirs, 30, legacy + [
        "--trainer.max_steps", "30", "--model.init_args.init_from", str(stage1 / "export"),
        "--model.init_args.freeze", "[encoder, quantizer, latent_tokens]",
    ])
    s2 = load_file(str(stage2 / "export" / "model.safetensors"))
    for key in ("encoder.to_tokens.weight", "latent_tokens"):
        torch.testing.assert_close(s1[key], s2[key], atol=1e-6, rtol=0)
    assert not torch.equal(s1["decoder.head.2.weight"], s2["decoder.head.2.weight"])
    assert not torch.equal(s1["pixel_decoder.conv_out.weight"], s2["pixel_decoder.conv_out.weight"])


def test_freeze_names_unknown_prefix():
    from vtok.train import ImageTokenizerTraining

    with pytest.raises(ValueError, match="no parameter or buffer of titok-tiny starts with 'encoderr'"):
        ImageTokenizerTraining("titok-tiny", freeze=["encoderr"])


def test_frozen_ema_quantizer_stays_in_eval_mode():
    """An EMA codebook is a buffer: freezing its module keeps it in eval mode, so it stops updating."""
    from vtok.train import ImageTokenizerTraining

    ema = {"kind": "vq", "codebook_size": 256, "distance": "cosine", "kmeans_init": True}
    module = ImageTokenizerTraining("titok-tiny", overrides={"quantizer": ema}, freeze=["encoder", "quantizer", "latent_tokens"])
    module.train()
    assert not module.model.quantizer.training and not module.model.encoder.training and module.model.decoder.training
    module.model(torch.rand(4, 3, 32, 32))  # k-means initialisation happens on the first call in any mode
    before = module.model.quantizer.codebook.clone()
    module.model(torch.rand(4, 3, 32, 32))
    assert torch.equal(module.model.quantizer.codebook, before)
