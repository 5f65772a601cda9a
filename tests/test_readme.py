"""README's snippets run as written (Python blocks, and the `vtok` commands of blocks marked ci:snippet), and its two
set-up commands are where CI finds them."""
import re
import shlex
from pathlib import Path

import pytest

from vtok import assets
from vtok.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
COMMANDS = re.findall(r"<!-- ci:snippet -->\n```bash\n(.*?)```", README.read_text(), re.S)


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 3 and len(COMMANDS) >= 2


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory laid out like the repo: recipes/ and a small data/images/{train,test} of sample-photo crops."""
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    for split, n, seed in (("train", 80, 0), ("test", 8, 1)):  # 80: one AR batch of 64 after the val split
        for i, crop in enumerate(assets.sample_crops(n, 128, seed=seed)):
            assets.save_image(crop, tmp_path / "data" / "images" / split / f"crop_{i:03d}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("block", COMMANDS, ids=[f"commands{i}" for i in range(len(COMMANDS))])
def test_readme_commands_run(block, workdir):
    """Each `vtok ...` line runs in-process as the console script would; comment lines are skipped."""
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all(line.startswith("vtok ") for line in lines)
    for line in lines:
        assert main(shlex.split(line)[1:]) in (0, None), line


@pytest.mark.parametrize("marker", ["ci:demo", "ci:test"])
def test_setup_commands_are_one_line_each(marker):
    block = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)```", README.read_text(), re.S)
    assert block and len(block.group(1).strip().splitlines()) == 1
