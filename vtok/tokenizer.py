"""The base of every vtok tokenizer: plain-JSON config, input checks, Hub save/load."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from torch import Tensor, nn

from .quantizers.base import FLOAT_DTYPES

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


class Tokenizer(nn.Module, PyTorchModelHubMixin, library_name="vtok", tags=["vtok", "tokenizer"]):
    """A discrete tokenizer: `encode` a signal to long ids, `decode` ids back to the signal.

    Subclasses are built from plain keyword config (JSON only, kept in `self.config`) and set
    `modality`; `save_pretrained`/`push_to_hub` come from huggingface_hub's mixin, loading is
    `vtok.load` (strict, safetensors only).
    """

    modality: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def __init__(self, **config: Any):
        super().__init__()
        try:
            json.dumps(config)
        except TypeError as err:
            raise ValueError(f"{type(self).__name__}: config must be plain JSON (str, number, list, dict), {err}") from None
        self.config = config

    # --- what every tokenizer tells about itself -------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of distinct ids per codebook."""
        raise NotImplementedError

    @property
    def num_codebooks(self) -> int:
        """Ids per token position (Q): 1 for single-codebook models."""
        return 1

    @property
    def bits_per_token(self) -> float:
        """log2(vocab_size) times the number of codebooks."""
        return self.num_codebooks * math.log2(self.vocab_size)

    def describe(self) -> dict[str, Any]:
        """vtok fields recorded in config.json and the model card (modality, vocab, tokens, bits)."""
        return {"modality": self.modality, "vocab_size": self.vocab_size, "num_codebooks": self.num_codebooks}

    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """Map an official release's state dict onto this architecture's keys (a load-time filter)."""
        raise NotImplementedError(f"{cls.__name__} has no converter for official weights")

    def encode(self, x: Tensor, **kwargs: Any) -> Tensor:
        raise NotImplementedError

    def decode(self, ids: Tensor, **kwargs: Any) -> Tensor:
        raise NotImplementedError

    # --- Hub I/O ----------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write model.safetensors and config.json (architecture + config + vtok fields)."""
        from .hub import save_weights

        save_weights(self, save_directory)
        record = {"architecture": type(self).__name__, "config": self.config, "vtok": self.describe()}
        (save_directory / "config.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        (save_directory / "README.md").unlink(missing_ok=True)  # the mixin writes a fresh card next

    def generate_model_card(self, **card: Any) -> ModelCard:
        """Model card from vtok's template; card keys: name, metrics (dict), recipe, data, license, ..."""
        data = ModelCardData(library_name="vtok", license=card.get("license", "apache-2.0"), tags=["vtok", self.modality, "tokenizer"])
        return ModelCard.from_template(
            data, template_str=TEMPLATE.read_text(), architecture=type(self).__name__, paper=self.paper,
            fields=self.describe(), config=json.dumps(self.config, indent=2, sort_keys=True), **card,
        )

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> "Tokenizer":
        """Load strictly from a local dir or Hub repo id; the class must match config.json."""
        from .hub import load_pretrained

        model = load_pretrained(source, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{source}: holds a {type(model).__name__}, not a {cls.__name__}")
        return model


# --- input checks shared by image and audio tokenizers --------------------------------------
def check_signal(x: Tensor, name: str, shape: str, ndim: int, lo: float, hi: float) -> None:
    """Raise ValueError unless x is a non-empty float tensor of rank ndim with values in [lo, hi]."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor {shape}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a float tensor {shape} in [{lo:g}, {hi:g}], got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor {shape}, got shape {tuple(x.shape)}")
    x_min, x_max = float(x.min()), float(x.max())
    tol = 1e-3
    if x_min < lo - tol or x_max > hi + tol or math.isnan(x_min) or math.isnan(x_max):
        raise ValueError(f"{name}: expected values in [{lo:g}, {hi:g}], got range [{x_min:.4g}, {x_max:.4g}]")


class ImageTokenizer(Tokenizer):
    """Images float (B,3,H,W) in [0,1] at `image_size` <-> ids (B,N) long."""

    modality = "image"
    variable_length: ClassVar[bool] = False  # True: encode(x, num_tokens=k) / decode take any prefix of 1..K ids

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def num_tokens(self) -> int:
        """Token positions per image."""
        raise NotImplementedError

    @property
    def bits_per_image(self) -> float:
        return self.num_tokens * self.bits_per_token

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "image_size": self.image_size, "num_tokens": self.num_tokens,
                "bits_per_image": self.bits_per_image}

    def check_num_tokens(self, num_tokens: int | None) -> int:
        """The number of tokens to keep: a fixed-length tokenizer takes only None or num_tokens."""
        if num_tokens is not None and num_tokens != self.num_tokens:
            name = getattr(self, "family", type(self).__name__.lower())
            raise ValueError(f"{name}: a fixed-length tokenizer of {self.num_tokens} tokens, got num_tokens={num_tokens}")
        return self.num_tokens

    def check_images(self, x: Tensor) -> None:
        """Raise ValueError unless x is float (B,3,S,S) in [0,1] with S = image_size."""
        s = self.image_size
        check_signal(x, "images", f"(B, 3, {s}, {s})", 4, 0.0, 1.0)
        if tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"images: expected shape (B, 3, {s}, {s}), got {tuple(x.shape)}")


class AudioTokenizer(Tokenizer):
    """Audio float (B,1,T) in [-1,1] at `sample_rate` <-> ids (B,Q,T') long."""

    modality = "audio"

    @property
    def sample_rate(self) -> int:
        return int(self.config["sample_rate"])

    @property
    def hop_length(self) -> int:
        """Samples per token frame."""
        raise NotImplementedError

    def check_ids(self, ids: Tensor) -> None:
        """Raise ValueError unless ids is a non-empty integer tensor (B, q, T'), 1 <= q <= num_codebooks
        (values are checked by the quantizer)."""
        q = self.num_codebooks
        want = "an integer tensor (B, 1, T')" if q == 1 else f"an integer tensor (B, q, T') with 1 <= q <= {q}"
        if not isinstance(ids, Tensor):
            raise ValueError(f"ids: expected {want}, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids: expected {want}, got dtype {ids.dtype}")
        if ids.ndim != 3 or not 1 <= ids.shape[1] <= q or ids.numel() == 0:
            raise ValueError(f"ids: expected {want}, got shape {tuple(ids.shape)}")

    @property
    def causal(self) -> bool:
        """True when no id or sample depends on later input (chunks then need context on the left only)."""
        return False

    @property
    def chunk_overlap_seconds(self) -> float:
        """Default context on each side of a chunk in `encode`/`decode(..., chunk_seconds=...)`."""
        return 1.0

    @property
    def tokens_per_second(self) -> float:
        """Token frames per second of audio."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_second(self) -> float:
        return self.tokens_per_second * self.bits_per_token

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sample_rate": self.sample_rate, "hop_length": self.hop_length,
                "tokens_per_second": self.tokens_per_second, "bits_per_second": self.bits_per_second}

    def check_audio(self, wav: Tensor, sample_rate: int | None = None) -> None:
        """Raise ValueError unless wav is float (B,1,T) in [-1,1], T >= hop_length, at our rate."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"audio: expected sample rate {self.sample_rate} Hz, got {sample_rate} Hz (resample first)")
        check_signal(wav, "audio", "(B, 1, T)", 3, -1.0, 1.0)
        if wav.shape[1] != 1:
            raise ValueError(f"audio: expected mono (B, 1, T), got {wav.shape[1]} channels, shape {tuple(wav.shape)}")
        if wav.shape[-1] < self.hop_length:
            raise ValueError(f"audio: expected at least {self.hop_length} samples (one token frame), got {wav.shape[-1]}")
