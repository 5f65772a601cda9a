"""`vtok fit --config recipe.yaml`: LightningCLI over vtok's training modules and data modules."""
from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI


def fit(argv: list[str]) -> None:
    """Run LightningCLI's `fit` with `argv` (e.g. ["--config", "recipes/vqgan/tiny-cpu.yaml"])."""
    args = ["fit", *argv]
    LightningCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        args=None if sys.argv[1:] == args else args,  # from the console, LightningCLI reads sys.argv itself
        save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
    )
