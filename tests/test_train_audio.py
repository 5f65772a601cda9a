"""Audio codec training: losses and discriminators, `vtok fit` on real speech learns, a killed run resumes exactly."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vtok
from vtok import assets
from vtok.nn.audio_discriminators import AudioDiscriminator, MultiPeriodDiscriminator, MultiScaleSTFTDiscriminator
from vtok.nn.audio_losses import MultiResolutionMelLoss, feature_matching_loss, gan_d_loss, gan_g_loss
from vtok.train.audio_data import AudioDataModule, AudioSegments

from conftest import assert_same_exported_weights, kill_after_first_checkpoint

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "rvq_codec" / "tiny-cpu.yaml"
RUN = Path("runs") / "rvq-codec-tiny-cpu"
MAX_STEPS, GAN_START = 100, 60  # Lightning counts both optimizers' steps: 60 + 20 batches, the GAN on for 20
HELD_OUT_SECONDS = 1.0


@pytest.fixture(scope="module")
def speech_dirs(tmp_path_factory):
    """The shipped speech clips at 24 kHz: the last second of each held out, the rest cut into 0.5 s training files."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("speech")
    (root / "train" / "clips").mkdir(parents=True)
    (root / "test").mkdir()
    for path in assets.sample_speech_paths():
        wav, rate = sf.read(str(path), dtype="float32")
        cut = len(wav) - round(HELD_OUT_SECONDS * rate)
        sf.write(str(root / "test" / path.name), wav[cut:], rate)
        piece = rate // 2
        for i, start in enumerate(range(0, cut - piece + 1, piece)):
            sf.write(str(root / "train" / "clips" / f"{path.stem}_{i}.wav"), wav[start:start + piece], rate)
    return root


def fit_command(speech_dirs, max_steps=MAX_STEPS, recipe=RECIPE):
    return [
        sys.executable, "-m", "vtok.cli", "fit", "--config", str(recipe),
        "--data.init_args.train_dir", str(speech_dirs / "train"), "--data.init_args.val_dir", str(speech_dirs / "test"),
        "--data.init_args.batch_size", "4", "--data.init_args.segment_seconds", "0.25",
        "--data.init_args.val_seconds", "null", "--model.init_args.gan_start", str(GAN_START),
        "--trainer.max_steps", str(max_steps), "--trainer.val_check_interval", "30",
        "--trainer.log_every_n_steps", "5", "--trainer.enable_progress_bar", "false",
    ]


def run_fit(cwd, speech_dirs):
    result = subprocess.run(fit_command(speech_dirs), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / RUN


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, speech_dirs):
    """One uninterrupted run of the tiny recipe on the training clips."""
    return run_fit(tmp_path_factory.mktemp("whole"), speech_dirs)


def held_out_mel_distance(tok, speech_dirs) -> float:
    """DAC's multi-resolution mel distance of encode -> decode, averaged over the held-out clips."""
    mel = MultiResolutionMelLoss(tok.sample_rate)
    distances = []
    with torch.no_grad():
        for path in sorted((speech_dirs / "test").iterdir()):
            x = assets.load_audio(path, tok.sample_rate)[0][None]
            distances.append(mel(tok.decode(tok.encode(x))[..., : x.shape[-1]], x).item())
    return sum(distances) / len(distances)


def test_fit_learns_and_exports(whole_run, speech_dirs):
    trained = vtok.load(whole_run / "export")
    torch.manual_seed(0)  # step 0: the recipe's seed, the model built first
    fresh = vtok.create("rvq-codec-tiny").eval()
    before, after = held_out_mel_distance(fresh, speech_dirs), held_out_mel_distance(trained, speech_dirs)
    print(f"held-out mel distance: untrained {before:.2f} -> trained {after:.2f}")
    assert after < 0.9 * before  # 100 Lightning steps on CPU: measured 8.62 -> 5.76
    ckpt = torch.load(whole_run / "checkpoints" / "last.ckpt", weights_only=False)  # our own checkpoint, test only
    assert ckpt["vtok"]["batches_seen"] == (MAX_STEPS + GAN_START) // 2
    assert len(ckpt["optimizer_states"]) == 2 and ckpt["optimizer_states"][1]["state"], "the discriminator never stepped"
    assert any("EMAWeightAveraging" in k for k in ckpt["callbacks"])
    with open(whole_run / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("val/mel_distance") for r in rows) and any(r.get("val/si_sdr") for r in rows)
    assert any(r.get("train/gan_d") for r in rows) and any(r.get("train/feature") for r in rows)


def test_killed_run_resumes_to_the_same_weights(tmp_path, speech_dirs, whole_run):
    kill_after_first_checkpoint(fit_command(speech_dirs), tmp_path, tmp_path / RUN)
    resumed = run_fit(tmp_path, speech_dirs)
    assert_same_exported_weights(whole_run, resumed)


def test_killed_wavtokenizer_run_resumes_to_the_same_weights(tmp_path, speech_dirs):
    recipe, run = RECIPE.parents[1] / "wavtokenizer" / "tiny-cpu.yaml", Path("runs") / "wavtokenizer-tiny-cpu"
    cmd = fit_command(speech_dirs, recipe=recipe)
    for name in ("whole", "killed"):
        (tmp_path / name).mkdir()
    assert subprocess.run(cmd, cwd=tmp_path / "whole", capture_output=True, timeout=600).returncode == 0
    kill_after_first_checkpoint(cmd, tmp_path / "killed", tmp_path / "killed" / run)
    assert subprocess.run(cmd, cwd=tmp_path / "killed", capture_output=True, timeout=600).returncode == 0
    assert_same_exported_weights(tmp_path / "whole" / run, tmp_path / "killed" / run)


@pytest.mark.parametrize("family", ["rvq_codec", "wavtokenizer"])
def test_two_gloo_ranks_train_the_tiny_recipe_to_identical_weights(family, tmp_path, speech_dirs):
    """`--trainer.devices 2 --trainer.strategy ddp` on CPU (gloo): generator, discriminator and codebooks stay in step."""
    dump = tmp_path / "weights"
    cmd = fit_command(speech_dirs, 12, RECIPE.parents[1] / family / "tiny-cpu.yaml") + [
        "--model.init_args.gan_start", "2", "--trainer.devices", "2",
        "--trainer.strategy", "ddp_find_unused_parameters_true",  # G and D steps each use part of the module
        "--trainer.callbacks+", '{"class_path": "rank_dump.DumpWeights", "init_args": {"out": "%s"}}' % dump,
    ]
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (load_file(str(dump / f"rank{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys() and any("_codebook.embed" in k for k in a) and any(k.startswith("discriminator.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_discriminators_shapes_and_gradients():
    x = (0.3 * torch.randn(2, 1, 4000)).requires_grad_()
    mpd = MultiPeriodDiscriminator(channels=(4, 8, 8))
    logits, fmaps = mpd(x)
    assert len(logits) == len(fmaps) == 5 and all(len(f) == 4 for f in fmaps)  # 3 convs + head per period
    assert all(l.ndim == 2 and l.shape[0] == 2 for l in logits)
    msd = MultiScaleSTFTDiscriminator(n_ffts=(512, 256, 128), filters=4, max_filters=8)
    logits, fmaps = msd(x)
    assert [l.shape[2] for l in logits] == [(4000 - n) // (n // 4) + 1 for n in (512, 256, 128)]  # frames
    assert [l.shape[3] for l in logits] == [(n // 2 + 1 + 7) // 8 for n in (512, 256, 128)]  # freq / 2³
    both = AudioDiscriminator((2, 3), (4, 8), (256,), 4, 8)
    logits, fmaps = both(x)
    assert len(logits) == len(fmaps) == 3
    gan_g_loss(logits).backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in both.parameters())
    with pytest.raises(ValueError, match="at least one"):
        AudioDiscriminator((), (4,), ())


def test_losses():
    x = 0.3 * torch.randn(2, 1, 4000)
    mel = MultiResolutionMelLoss(16000)
    assert mel(x, x).item() == 0.0 and mel(0.5 * x, x).item() == pytest.approx(7 * torch.log10(torch.tensor(2.0)).item(), rel=1e-2)
    x_hat = x.clone().requires_grad_()
    mel(x_hat + 0.01 * torch.randn_like(x), x).backward()
    assert x_hat.grad.abs().sum() > 0
    ones, zeros = [torch.ones(3), torch.ones(2, 4)], [torch.zeros(3), torch.zeros(2, 4)]
    assert gan_d_loss(ones, [-o for o in ones], "hinge").item() == 0.0
    assert gan_d_loss(ones, zeros, "lsgan").item() == 0.0 and gan_d_loss(zeros, zeros, "lsgan").item() == 1.0
    assert gan_g_loss(ones, "hinge").item() == 0.0 and gan_g_loss(zeros, "hinge").item() == 1.0
    assert gan_g_loss(zeros, "lsgan").item() == 1.0
    with pytest.raises(ValueError, match="hinge"):
        gan_g_loss(ones, "wasserstein")
    real = [[torch.full((2, 3), 2.0)], [torch.full((4,), -1.0), torch.ones(5)]]
    fake = [[torch.full((2, 3), 1.0)], [torch.full((4,), -1.0), torch.ones(5)]]
    assert feature_matching_loss(real, fake).item() == pytest.approx(0.5 / 3)  # |2-1| / |2|, then 0, 0
    assert feature_matching_loss(real, fake, relative=False).item() == pytest.approx(1 / 3)


def test_segments_are_seeded_and_in_range(speech_dirs):
    data = AudioSegments(speech_dirs / "train", 16000, 0.25)
    a, b = data[(3, 0, 1)], data[(3, 0, 1)]
    assert a.shape == (1, 4000) and torch.equal(a, b) and a.abs().max() <= 1.0
    assert not torch.equal(a, data[(3, 0, 2)])  # another epoch, another crop
    module = AudioDataModule(str(speech_dirs / "train"), str(speech_dirs / "test"), 16000, 0.25, batch_size=4)
    module.setup("fit")
    loader = module.train_dataloader()
    order = list(loader)
    module.resume_at(0, 2)
    rest = list(loader)
    assert len(rest) == len(order) - 2 and all(torch.equal(u, v) for u, v in zip(order[2:], rest))
    assert [v.shape[-1] for v in module.val_dataloader()] == [16000] * 3  # whole held-out seconds
