"""Every recipe parses with LightningCLI (types checked, nothing built); tokenizer recipes name a registered model."""
from pathlib import Path

import pytest
import yaml

import vtok
from vtok.train.cli import fit

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*/*.yaml"))


def test_there_are_paper_and_tiny_recipes():
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    assert {"titok/tiny-cpu", "onedpiece/tiny-cpu", "titok/titok-l-32-stage1", "titok/titok-l-32-stage2",
            "onedpiece/onedpiece-l-256-stage2", "ar/onedpiece-tiny-cpu", "ar/wavtokenizer-tiny-cpu"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit(["--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    args = printed["model"]["init_args"]
    if path.parent.name != "ar":  # AR recipes train a GPT on the tokens of a tokenizer export
        vtok.registry.get_entry(args["tokenizer"])  # a registered model
    callbacks = printed["trainer"]["callbacks"]
    checkpoint = next(c for c in callbacks if c["class_path"].endswith("ModelCheckpoint"))["init_args"]
    # resumable by rerunning the same command: a fixed dirpath, last.ckpt, ckpt_path: last
    assert checkpoint["dirpath"] and checkpoint["save_last"] is True and printed["ckpt_path"] == "last"
    if path.parent.name != "ar":
        assert any(c["class_path"].endswith(("WeightEMA", "EMAWeightAveraging")) for c in callbacks)  # an EMA of the weights
