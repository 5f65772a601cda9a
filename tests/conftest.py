"""Shared fixtures: tiny registry models and real sample inputs for them; shared training-test checks."""
import lightning as L
import pytest
import torch

import vtok
from vtok import assets

TINY = ["vqgan-tiny", "titok-tiny", "titok-tiny-legacy", "onedpiece-tiny", "rvq-codec-tiny", "wavtokenizer-tiny", "flextok-tiny"]


def sample_input(tok) -> torch.Tensor:
    """A real image or speech excerpt shaped for `tok`."""
    if tok.modality == "image":
        return torch.stack([assets.load_image(p, size=tok.image_size) for p in assets.sample_image_paths()[:2]])
    wav, _ = assets.load_audio(assets.sample_speech_paths()[0], sample_rate=tok.sample_rate)
    return wav[None, :, : tok.sample_rate // 2]


@pytest.fixture(params=TINY)
def tiny(request):
    torch.manual_seed(0)
    return vtok.create(request.param).eval()


def write_crop_dirs(root, train_per_photo: int, test_per_photo: int):
    """root/train and root/test of seeded random crops of the sample photos; two photos (a cat, a portrait)
    are held out for test, the rest (people, space, objects) train. Returns root."""
    import random

    from PIL import Image

    from vtok import assets

    rng = random.Random(0)
    paths = assets.sample_image_paths()
    held_out = {"chelsea", "grace_hopper"}
    for split, chosen, n in (("train", [p for p in paths if p.stem not in held_out], train_per_photo),
                             ("test", [p for p in paths if p.stem in held_out], test_per_photo)):
        (root / split).mkdir()
        for p in chosen:
            with Image.open(p) as im:
                for i in range(n):
                    side = rng.randint(64, 256)
                    left, top = rng.randint(0, 256 - side), rng.randint(0, 256 - side)
                    im.crop((left, top, left + side, top + side)).save(root / split / f"{p.stem}_{i}.png")
    return root


def kill_after_first_checkpoint(cmd: list[str], cwd, run_dir) -> None:
    """Start a `vtok fit` command, SIGKILL it once run_dir/checkpoints/last.ckpt exists, check it died mid-run."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    assert not (run_dir / "export").exists(), "killed too late to test resuming"


def assert_same_exported_weights(run_a, run_b) -> None:
    """The export/model.safetensors of two runs hold bitwise-equal tensors under the same keys."""
    from safetensors.torch import load_file

    a, b = (load_file(str(run / "export" / "model.safetensors")) for run in (run_a, run_b))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- dual-codebook training: the frozen teacher stays outside what is trained and saved --------
def assert_teacher_outside_module(module, copied_into) -> list:
    """The module's frozen teacher started `copied_into` (its vision tower's weights) and is in none of the
    module's parameters or state dict; returns the teacher's parameters."""
    teacher = module.teacher_parameters()
    tower = vtok.image.dualcodebook.vision_tower(module.model.teacher()).state_dict()
    assert all(torch.equal(v, copied_into.state_dict()[k]) for k, v in tower.items())  # starts as the teacher
    assert not {id(p) for p in teacher} & {id(p) for p in module.parameters()}
    assert not any("teacher" in k for k in module.state_dict())
    return teacher


def assert_teacher_outside_fit(module, trainer, ema, ckpt_path) -> dict:
    """After a fit: the teacher is outside the optimizers, shared (not copied) by the EMA callback's copy, and
    absent from the checkpoint at ckpt_path; returns that checkpoint."""
    teacher = {id(p) for p in module.teacher_parameters()}
    assert not any(id(p) in teacher for opt in trainer.optimizers for g in opt.param_groups for p in g["params"])
    assert ema._average_model.module.model.teacher() is module.model.teacher()
    ckpt = torch.load(ckpt_path, weights_only=False)  # our own checkpoint, test only
    assert not any("teacher" in k for k in ckpt["state_dict"])
    return ckpt


class StopAt(L.Callback):
    """Ends fit after `batches` training batches, as a killed run would (its last.ckpt is that step's)."""

    def __init__(self, batches: int):
        self.batches = batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.batches_seen >= self.batches:
            trainer.should_stop = True
