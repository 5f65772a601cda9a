"""Model cards and README tables of the shipped tokenizers are what eval/make_cards.py renders from the saved results."""
import importlib.util
from pathlib import Path

import pytest

import vtok
from vtok import assets
from vtok.evaluation.harness import evaluate

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_cards", ROOT / "eval" / "make_cards.py")
make_cards = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_cards)
MODELS = make_cards.models()


def test_every_shipped_tokenizer_has_a_card_spec_and_a_checkpoint():
    shipped = {n for n in vtok.list_models() if "shipped" in vtok.registry.get_entry(n).tags}
    assert set(MODELS) == shipped
    for name, card in MODELS.items():
        assert (ROOT / card["recipe"]).is_file() and "--data" in card["eval"]
        assert vtok.hub.shipped_checkpoint(name) is not None, f"checkpoints/{name} is missing"
        size = sum(p.stat().st_size for p in (ROOT / "checkpoints" / name).iterdir())
        assert size < 20e6, f"checkpoints/{name}: {size / 1e6:.1f} MB"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_card_tables_are_rendered_from_the_saved_results(name):
    result = make_cards.saved_result(name)
    card = (ROOT / "checkpoints" / name / "README.md").read_text()
    assert make_cards.metrics_table(result) in card and make_cards.comparison(name, result) in card
    assert MODELS[name]["recipe"] in card and "vtok eval -t " + name in card
    assert result["data"]["path"] == MODELS[name]["eval"][MODELS[name]["eval"].index("--data") + 1]


def test_readme_shipped_table_is_rendered_from_the_saved_results():
    results = {n: make_cards.saved_result(n) for n in MODELS}
    assert make_cards.shipped_table(results) in (ROOT / "README.md").read_text()


def test_card_renders_for_a_fresh_evaluation(tmp_path):
    """render_card on a small real evaluation: the table rows, the codec comparison and the protocol."""
    name = "onedpiece-64px"
    result = evaluate(assets.sample_image_paths()[0].parent, tokenizers=[name], codecs=["jpeg"], out=tmp_path,
                      num_tokens=[8, 32], rfid=False)
    card = make_cards.render_card(name, MODELS[name], result)
    assert "| onedpiece-64px | 32 tokens | 320 |" in card and "| jpeg | quality" in card
    assert "At 320 bits/image, onedpiece-64px (32 tokens) has PSNR" in card
    assert "psnr:" in card and "recipes/onedpiece/onedpiece-64px.yaml" in card


def test_at_bits_interpolates_in_log_bits_and_refuses_to_extrapolate():
    points = [(100.0, 20.0), (400.0, 26.0)]
    assert make_cards.at_bits(points, 200.0) == pytest.approx(23.0)
    assert make_cards.at_bits(points, 50.0) is None and make_cards.at_bits(points, 800.0) is None


def test_replace_between_keeps_the_markers():
    text = "a\n<!-- t:start -->\nold\n<!-- t:end -->\nb"
    assert make_cards.replace_between(text, "t", "new") == "a\n<!-- t:start -->\nnew\n<!-- t:end -->\nb"
    with pytest.raises(ValueError, match="markers"):
        make_cards.replace_between("no markers", "t", "x")
