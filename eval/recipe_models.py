"""What `recipe_psnr.py` and `recipe_mel.py` share: a recipe's model at step 0 and after its run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

import vtok


def read_recipe(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A recipe YAML -> (the whole recipe, its data init_args)."""
    recipe = yaml.safe_load(Path(path).read_text())
    return recipe, recipe["data"]["init_args"]


def step0_and_trained(recipe: dict[str, Any], run_root: Path, first_batch: torch.Tensor) -> tuple[Any, Any]:
    """(the model the recipe builds, seeded as `vtok fit` seeds it, in eval mode; its export under run_root).

    The step-0 model first sees one training-mode forward on `first_batch`, so a k-means-initialised
    codebook is initialised as in the run's first step.
    """
    model_args = recipe["model"]["init_args"]
    torch.manual_seed(recipe.get("seed_everything", 0))
    fresh = vtok.create(model_args["tokenizer"], **(model_args.get("overrides") or {}))
    fresh(first_batch)
    return fresh.eval(), vtok.load(Path(run_root) / model_args["export_dir"])
