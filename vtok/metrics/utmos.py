"""UTMOS22 strong learner (Saeki et al. 2022): wav2vec2-base + domain/judge embeddings + BLSTM + projection -> MOS.

Architecture and state-dict key names follow tarepan/SpeechMOS's `UTMOS22Strong` (MIT), itself a port of
sarulab-speech/UTMOS22 (MIT), so its released state dict loads as is. Weights are loaded from safetensors only;
`convert_utmos_checkpoint` turns an official pickle checkpoint into one, reading it with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .weights import MissingWeightsError, user_file

SAMPLE_RATE = 16_000
# The official checkpoint (Lightning, epoch=3-step=7459) is hosted in the authors' demo Space on the Hugging Face Hub.
HUB_REPO, HUB_FILENAME, HUB_REPO_TYPE = "sarulab-speech/UTMOS-demo", "epoch=3-step=7459.ckpt", "space"
# The official demo scores with domain 0 (VMC22 main track) and listener 288 (the "mean" judge).
DOMAIN_ID, JUDGE_ID = 0, 288
_HOW = (
    "pass a local .safetensors file (convert an official checkpoint with vtok.metrics.utmos.convert_utmos_checkpoint), "
    f"or 'hub' to download {HUB_FILENAME} from the Hugging Face Space {HUB_REPO} (needs network once)"
)


class _WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight norm over the kernel axis (dim=2), stored as fairseq/torch weight_g/weight_v."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel_size // 2, groups
        v = torch.empty(channels, channels // groups, kernel_size)
        nn.init.normal_(v, 0, math.sqrt(4 / (kernel_size * channels)))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class _DropLast(nn.Module):
    """fairseq SamePad for an even kernel: drop the extra last frame."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :-1]


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        mask = None if keep is None else keep[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class _EncoderLayer(nn.Module):
    """Post-LN transformer layer of wav2vec2-base (fairseq TransformerSentenceEncoderLayer, layer_norm_first=False)."""

    def __init__(self, dim: int = 768, ffn: int = 3072, heads: int = 12):
        super().__init__()
        self.self_attn = _SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        x = self.self_attn_layer_norm(x + self.self_attn(x, keep))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class _TransformerEncoder(nn.Module):
    def __init__(self, dim: int = 768, layers: int = 12):
        super().__init__()
        self.pos_conv = nn.Sequential(_WeightNormConv1d(dim, 128, 16), _DropLast(), nn.GELU())
        self.layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(_EncoderLayer(dim) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer_norm(x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2))
        # fairseq pads the frame axis to a multiple of 2 and masks the pad as a key; keep that for identical numbers
        t = x.shape[1]
        keep = None
        if t % 2:
            x = F.pad(x, (0, 0, 0, 1))
            keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            keep[:, -1] = False
        for layer in self.layers:
            x = layer(x, keep)
        return x[:, :t]


class _ConvFeatureExtractor(nn.Module):
    """Seven strided convs (512 ch, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2): 320 samples per frame."""

    def __init__(self, dim: int = 512):
        super().__init__()
        spec = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2
        # index layout (conv, dropout, [GroupNorm,] GELU) matches fairseq's keys; dropout p=0 is an Identity here
        self.conv_layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(1 if i == 0 else dim, dim, k, stride=s, bias=False), nn.Identity(),
                          *([nn.GroupNorm(dim, dim)] if i == 0 else []), nn.GELU())
            for i, (k, s) in enumerate(spec)
        )

    def forward(self, wav: Tensor) -> Tensor:
        x = wav.unsqueeze(1)
        for conv in self.conv_layers:
            x = conv(x)
        return x


class Wav2Vec2Base(nn.Module):
    """wav2vec2-base (fairseq wav2vec_small) as a feature extractor: (B,T) 16 kHz -> (B,T/320,768) last-layer features."""

    def __init__(self):
        super().__init__()
        self.feature_extractor = _ConvFeatureExtractor(512)
        self.layer_norm = nn.LayerNorm(512)
        self.post_extract_proj = nn.Linear(512, 768)
        self.encoder = _TransformerEncoder(768)
        self.mask_emb = nn.Parameter(torch.empty(768).uniform_())  # unused at inference; kept for strict loading

    def forward(self, wav: Tensor) -> Tensor:
        x = self.layer_norm(self.feature_extractor(wav).transpose(1, 2))
        return self.encoder(self.post_extract_proj(x))


class UTMOS22Strong(nn.Module):
    """UTMOS22 strong learner without the phoneme encoder: (B,T) float 16 kHz waveform -> (B,) MOS (about 1..5)."""

    def __init__(self):
        super().__init__()
        self.wav2vec2 = Wav2Vec2Base()
        # the official model's domain-0 and judge-288 rows, frozen into (1,128) vectors
        self.domain_emb = nn.Parameter(torch.randn(1, 128), requires_grad=False)
        self.judge_emb = nn.Parameter(torch.randn(1, 128), requires_grad=False)
        self.blstm = nn.LSTM(768 + 128 + 128, 512, batch_first=True, bidirectional=True)
        self.projection = nn.Sequential(nn.Linear(1024, 2048), nn.ReLU(), nn.Linear(2048, 1))

    def forward(self, wav: Tensor) -> Tensor:
        if wav.dim() != 2 or wav.shape[-1] < 400:
            raise ValueError(f"UTMOS: expected (B,T) audio at 16 kHz with T >= 400, got {tuple(wav.shape)}")
        x = self.wav2vec2(wav)
        b, t, _ = x.shape
        x = torch.cat([x, self.domain_emb.expand(b, t, -1), self.judge_emb.expand(b, t, -1)], dim=2)
        return self.projection(self.blstm(x)[0]).mean(dim=1).squeeze(1) * 2 + 3


def _from_official(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a sarulab-speech/UTMOS22 Lightning `state_dict` onto UTMOS22Strong's keys (domain 0, judge 288 rows)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("feature_extractors.0.ssl_model."):
            out["wav2vec2." + key.removeprefix("feature_extractors.0.ssl_model.")] = value
        elif key.startswith("output_layers.0.decoder_rnn."):
            out["blstm." + key.removeprefix("output_layers.0.decoder_rnn.")] = value
        elif key.startswith("output_layers.1.net.0."):
            out["projection.0." + key.removeprefix("output_layers.1.net.0.")] = value
        elif key.startswith("output_layers.1.net.3."):
            out["projection.2." + key.removeprefix("output_layers.1.net.3.")] = value
    out["domain_emb"] = sd["feature_extractors.1.embedding.weight"][DOMAIN_ID : DOMAIN_ID + 1]
    out["judge_emb"] = sd["output_layers.0.judge_embedding.weight"][JUDGE_ID : JUDGE_ID + 1]
    return out


class _Opaque:
    """Inert stand-in for a non-tensor class in a checkpoint (e.g. Lightning's pickled Hydra config): stores nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


_UNSUPPORTED = re.compile(r"GLOBAL (\S+) was not an allowed global")


def _load_weights_only(src: str | Path) -> dict:
    """torch.load(weights_only=True), with each global the file names outside torch's allowlist mapped to an _Opaque.

    weights_only still builds only tensors and plain containers; the Hydra config the official Lightning checkpoint
    pickles beside its state dict becomes inert placeholders instead of a refusal.
    """
    stubs: list[tuple[type, str]] = []
    for _ in range(256):
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(src, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            found = _UNSUPPORTED.search(str(e))
            if not found:
                raise ValueError(f"UTMOS: cannot read {src} with torch.load(weights_only=True): {e}") from e
            stubs.append((type(found.group(1), (_Opaque,), {}), found.group(1)))
    raise ValueError(f"UTMOS: {src} names too many non-tensor globals to be a weights checkpoint")


def convert_utmos_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Read a UTMOS22 strong pickle checkpoint with torch.load(weights_only=True) and write UTMOS22Strong safetensors.

    Accepts tarepan/SpeechMOS's `utmos22_strong_step7459_v1.pt` (a plain state dict, same keys) or the official
    Lightning checkpoint `epoch=3-step=7459.ckpt` (keys under "state_dict", mapped here: wav2vec2, BLSTM, projection,
    and the domain-0 / judge-288 embedding rows). Run once; vtok then loads only the safetensors file.
    """
    ckpt = _load_weights_only(src)
    if not isinstance(ckpt, dict):
        raise ValueError(f"UTMOS: expected a state dict or a Lightning checkpoint dict in {src}, got {type(ckpt).__name__}")
    sd = _from_official(ckpt["state_dict"]) if "state_dict" in ckpt else ckpt
    with torch.device("meta"):
        expected = set(UTMOS22Strong().state_dict())
    sd = {k: v for k, v in sd.items() if k in expected}
    missing = sorted(expected - sd.keys())
    if missing:
        raise ValueError(f"UTMOS: expected a UTMOS22 strong checkpoint, {src} lacks {len(missing)} keys, e.g. {missing[:5]}")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, str(dst))
    return dst


def _cache_dir() -> Path:
    return Path(os.environ.get("VTOK_CACHE", Path.home() / ".cache" / "vtok")).expanduser()


def resolve_utmos_weights(weights: str | Path | None, local_files_only: bool = False) -> Path:
    """Path of UTMOS safetensors from a local file, 'hub' (official Space, converted once) or 'hf:<repo>[:<file>]'."""
    if weights is None:
        raise MissingWeightsError(f"UTMOS22 strong weights: none given; {_HOW}")
    spec = str(weights)
    if spec == "hub" or spec.startswith("hf:"):
        from huggingface_hub import hf_hub_download

        if spec == "hub":
            repo, filename, repo_type = HUB_REPO, HUB_FILENAME, HUB_REPO_TYPE
        else:
            repo, _, filename = spec.removeprefix("hf:").partition(":")
            filename, repo_type = filename or "model.safetensors", "model"
        # a pickle checkpoint is converted once into the vtok cache; later runs (offline too) read that file
        converted = _cache_dir() / f"utmos22_strong--{repo.replace('/', '--')}--{Path(filename).stem}.safetensors"
        if converted.is_file():
            return converted
        try:
            path = Path(hf_hub_download(repo, filename, repo_type=repo_type, local_files_only=local_files_only))
        except Exception as e:  # offline, absent, gated: all mean "no weights here"
            raise MissingWeightsError(f"UTMOS22 strong weights: could not get {filename} from {repo_type} {repo} ({type(e).__name__}); {_HOW}") from e
        return path if path.suffix == ".safetensors" else convert_utmos_checkpoint(path, converted)
    path = user_file(spec, "UTMOS22 strong weights", _HOW)
    if path.suffix != ".safetensors":
        raise MissingWeightsError(f"UTMOS22 strong weights: vtok loads safetensors only, got {path}; {_HOW}")
    return path


def load_utmos(weights: str | Path | None, device: str | torch.device = "cpu", local_files_only: bool = False) -> UTMOS22Strong:
    """UTMOS22Strong in eval mode with weights loaded strictly (see resolve_utmos_weights for `weights`)."""
    path = resolve_utmos_weights(weights, local_files_only=local_files_only)
    model = UTMOS22Strong()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval().to(device)
