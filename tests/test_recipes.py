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


SHIPPED = [n for n in vtok.list_models() if {"shipped", "cpu-recipe"} & set(vtok.registry.get_entry(n).tags)]


def test_the_cpu_trained_tokenizers_are_registered():
    assert set(SHIPPED) == {"onedpiece-64px", "titok-64px", "wavtokenizer-speech-24k", "rvq-codec-speech-16k"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_entry_is_what_its_recipe_trains(name):
    """The registry config of a shipped (or CPU-recipe) tokenizer equals its recipe's tokenizer + overrides, so the
    recipe rebuilds it."""
    entry = vtok.registry.get_entry(name)
    recipe = next(p for p in RECIPES if f"{p.parent.name}/{p.name}" in entry.description)
    args = yaml.safe_load(recipe.read_text())["model"]["init_args"]
    trained = {**vtok.registry.get_entry(args["tokenizer"]).config, **args.get("overrides", {})}
    assert trained == entry.config
