"""Save, load and push tokenizers: safetensors + config.json + model card, strict, no pickles."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from safetensors.torch import load_file, save_model

from .tokenizer import Tokenizer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")


class HubUnavailableError(OSError):
    """A Hub repo that is neither in the local cache nor reachable."""


def load_frozen_dependency(loader: Any, source: str | Path, *, who: str, what: str, setting: str) -> Any:
    """`loader(path_or_id)` on a local directory or a Hub id in the local cache (a teacher, a VAE); a missing
    directory or an unloadable id -> HubUnavailableError naming `what` to provide and the `setting` to set."""
    source = str(source)
    local = Path(source).expanduser()
    if not local.exists() and (local.is_absolute() or source.startswith((".", "~"))):
        raise HubUnavailableError(
            f"{who}: the directory {source!r} does not exist. Provide a local directory holding {what} "
            f"(config.json + weights, e.g. saved with save_pretrained) and set {setting} to it, or set {setting} "
            f"to a Hub id in the local Hugging Face cache.")
    try:
        return loader(str(local) if local.exists() else source)
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise HubUnavailableError(
            f"{who}: cannot load {source!r} as {what} ({type(err).__name__}: {first}). Provide it: the Hub repo in "
            f"the local Hugging Face cache (on a machine with internet: `hf download {source}`, then copy $HF_HOME "
            f"here; set HF_HUB_OFFLINE=1 to skip network retries), or a local directory with its config.json and "
            f"weights, set as {setting}.") from None


def checkpoints_dir() -> Path:
    """Where shipped checkpoints live: $VTOK_CHECKPOINTS or the repo's checkpoints/."""
    return Path(os.environ.get("VTOK_CHECKPOINTS", Path(__file__).resolve().parents[1] / "checkpoints"))


def shipped_checkpoint(name: str) -> Path | None:
    """The shipped checkpoint directory of a registry name, if there is one."""
    path = checkpoints_dir() / name
    return path if (path / CONFIG).is_file() else None


def shipped_names(modality: str) -> list[str]:
    """Registry names, sorted, of every checkpoint shipped for `modality` ("image" | "audio")."""
    from .registry import get_entry, list_models

    return [n for n in list_models(pretrained=True) if shipped_checkpoint(n) and get_entry(n).cls.modality == modality]


def first_shipped(modality: str) -> str | None:
    """Registry name of the first checkpoint shipped for `modality` ("image" | "audio"), if any."""
    return next(iter(shipped_names(modality)), None)


def save_weights(model: torch.nn.Module, directory: Path) -> None:
    """Write the model's state dict to directory/model.safetensors (shared tensors handled)."""
    save_model(model, str(Path(directory) / WEIGHTS))


def refuse_pickle(path: Path) -> None:
    """Raise ValueError for a pickle-based weight file: vtok never unpickles."""
    raise ValueError(
        f"{path}: vtok loads safetensors only and never unpickles {path.suffix} files. "
        "Convert it once in a trusted environment (torch.load(..., weights_only=True) then "
        "safetensors.torch.save_file) or use the converter of the matching official model."
    )


def _hub_file(repo_id: str, filename: str, **kwargs: Any) -> Path:
    """Path of one file of a Hub repo, from the cache or the Hub; one clear error when neither has it."""
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, **kwargs))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise HubUnavailableError(
            f"cannot load {filename} of Hub repo {repo_id!r}: it is not in the local Hugging Face cache "
            f"and the Hub could not provide it ({type(err).__name__}). On a machine with internet, run "
            f"`hf download {repo_id}` (or `huggingface-cli download {repo_id}`) and copy the cache "
            f"($HF_HOME, default ~/.cache/huggingface) here, or pass a local directory to vtok.load()."
        ) from None


def resolve_files(source: str | Path, **hub_kwargs: Any) -> tuple[Path, Path]:
    """(config.json, model.safetensors) paths for a local directory or a Hub repo id."""
    path = Path(source)
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path)
    if path.is_dir():
        config, weights = path / CONFIG, path / WEIGHTS
        if not config.is_file():
            raise ValueError(f"{path}: expected a vtok directory with {CONFIG} and {WEIGHTS}; no {CONFIG} found")
        if not weights.is_file():
            pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
            if pickles:
                refuse_pickle(pickles[0])
            raise ValueError(f"{path}: expected weights in {WEIGHTS}, found none")
        return config, weights
    if path.exists():
        raise ValueError(f"{path}: expected a directory (config.json + model.safetensors) or a Hub repo id")
    repo_id = str(source)
    return _hub_file(repo_id, CONFIG, **hub_kwargs), _hub_file(repo_id, WEIGHTS, **hub_kwargs)


def read_config(path: Path) -> tuple[type[Tokenizer], dict[str, Any]]:
    """The architecture class and config recorded in a config.json."""
    from .registry import ARCHITECTURES

    record = json.loads(Path(path).read_text())
    arch = record.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: unknown architecture {arch!r}; vtok knows {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch], record["config"]


def load_weights_strict(model: torch.nn.Module, weights: Path, map_location: str | torch.device = "cpu") -> None:
    """Load safetensors weights; any missing or unexpected key is an error."""
    load_state_strict(model, load_file(str(weights), device=str(map_location)), str(weights))


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load a state dict; any missing or unexpected key (or shape mismatch) is a ValueError naming origin."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{origin}: weights do not match {type(model).__name__}: "
            f"missing keys {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
        )


def load_pretrained(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    map_location: str | torch.device = "cpu",
) -> Tokenizer:
    """A tokenizer in eval mode from a local directory or a Hub repo id, loaded strictly."""
    config_path, weights = resolve_files(
        source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    cls, config = read_config(config_path)
    model = cls(**config)
    load_weights_strict(model, weights, map_location)
    return model.to(map_location).eval()


def load_official(
    name: str, weights: str | Path | None = None, map_location: str | torch.device = "cpu", **hub_kwargs: Any
) -> Tokenizer:
    """A registry entry built from its official release, converted at load: the official safetensors
    from the Hub (cache), or `weights`, a local safetensors file of the official state dict."""
    from .registry import get_entry

    entry = get_entry(name)
    if entry.official is None:
        raise ValueError(f"{name!r} does not reproduce an official release")
    if weights is not None:
        path = Path(weights)
        if path.suffix in PICKLE_SUFFIXES:
            refuse_pickle(path)
    elif Path(entry.official_file).suffix in PICKLE_SUFFIXES:
        raise ValueError(
            f"{name!r}: the official release ({entry.official}/{entry.official_file}) is a pickle, which vtok never "
            "unpickles. Convert it once in a trusted environment: state = torch.load(file, weights_only=True) "
            "(take its 'state_dict' if it is a training checkpoint), safetensors.torch.save_file(state, "
            f"'official.safetensors'); then vtok.load({name!r}, official_weights='official.safetensors')"
        )
    else:
        path = _hub_file(entry.official, entry.official_file, **hub_kwargs)
    model = entry.cls(**entry.config)
    state = entry.cls.convert_official(load_file(str(path), device=str(map_location)), entry.config)
    load_state_strict(model, state, f"{entry.official}/{entry.official_file}")
    return model.to(map_location).eval()


def official_entry(repo_id: str) -> str | None:
    """The registry name whose official release is `repo_id`, if any."""
    from .registry import MODELS

    return next((n for n, e in MODELS.items() if e.official == repo_id), None)


def load(source: str | Path, *, official_weights: str | Path | None = None, **kwargs: Any) -> Tokenizer:
    """Load a tokenizer: a registry name (shipped, Hub or official weights), a local directory, or a Hub
    repo id; `official_weights` = a local safetensors file of an official release for a registry name."""
    from .registry import MODELS, get_entry

    name = str(source)
    if official_weights is not None:
        return load_official(name, weights=official_weights, **kwargs)
    if name in MODELS:
        shipped = shipped_checkpoint(name)
        if shipped is not None:
            return load_pretrained(shipped, **kwargs)
        entry = MODELS[name]
        if entry.hub_id is not None:
            return load_pretrained(entry.hub_id, **kwargs)
        if entry.official is not None:
            return load_official(name, **kwargs)
        raise ValueError(
            f"{name!r} has no pretrained weights (none shipped in {checkpoints_dir()}, no Hub repo); "
            f"use vtok.create({name!r}) for an untrained model, or pass a directory or Hub repo id"
        )
    official = official_entry(name)
    if official is not None:
        return load_official(official, **kwargs)
    if "/" not in name and not Path(name).exists():
        get_entry(name)  # neither a path nor an org/name repo id: a mistyped registry name
    return load_pretrained(source, **kwargs)


def push(
    source: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
    commit_message: str = "Upload vtok tokenizer",
) -> str:
    """Upload a saved tokenizer dir (or shipped registry name) to `repo_id` in one commit; returns its URL.

    The directory is loaded strictly first, and its own card is kept (one is written if absent).
    """
    from .registry import MODELS

    folder = shipped_checkpoint(str(source)) if str(source) in MODELS else Path(source)
    if folder is None or not folder.is_dir():
        raise ValueError(f"{source}: expected a saved tokenizer directory or a registry name with a shipped checkpoint")
    model = load_pretrained(folder)
    if not (folder / "README.md").is_file():
        model.generate_model_card(repo_id=repo_id).save(folder / "README.md")
    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=folder, allow_patterns=[CONFIG, WEIGHTS, "README.md"], commit_message=commit_message
    )
    return str(getattr(commit, "commit_url", commit))
