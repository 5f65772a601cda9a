"""WavTokenizer (Ji et al. 2024): one 4096-code VQ on SEANet latents, a Vocos decoder with an ISTFT head.

Config (plain JSON; the paper's values in brackets):
    sample_rate       rate of the mono input, Hz [24000]
    channels          base width of the SEANet encoder, doubled at each downsampling [32]
    ratios            encoder strides in decoder (upsampling) order, as EnCodec lists them; hop_length
                      = prod(ratios): [6, 5, 5, 4] -> hop 600, 40 tokens/s; [8, 5, 4, 2] -> hop 320, 75 tokens/s
    latent_dim        channels D of the latent frames, also the code dimension [512]
    lstm_layers       LSTM layers (with a skip) at the encoder bottleneck [2]
    dim               width of the Vocos backbone [768]
    intermediate_dim  hidden width of its ConvNeXt MLPs [2304]
    num_layers        ConvNeXt blocks [12]
    n_fft             FFT size (and Hann window) of the ISTFT head; null = 4 * hop_length [2400 | 1280]
    dropout           dropout in the pos-net ResNet blocks [0.1]
    quantizer         keywords for `vtok.quantizers.build`, kind "vq", `dim` = latent_dim
                      [4096 codes, EMA decay 0.99, k-means init (200 iters), dead codes (EMA count < 2)
                      restarted from the batch, commitment weight 1, straight-through gradient]

Method, top to bottom as in the paper's method section:
1. Encoder: EnCodec's SEANet (non-causal, weight-normed convs with reflect padding, a 2-layer
   LSTM) turns 24 kHz audio (B,1,T) into latents (B,D,T'), T' = ceil(T / hop_length).
2. Quantizer: a single codebook of 4096 codes, nearest neighbour in l2, EMA-updated and
   k-means initialised with dead-code restarts (the paper's "random awakening"): ids (B,1,T').
3. Decoder: a Vocos backbone (conv embed, attention pos-net, ConvNeXt blocks) at the token
   rate, and an ISTFT head whose frames hop exactly hop_length samples, so T' ids give T' * hop_length samples.

Training (`forward`) follows the contract of `vtok.train.AudioCodecTraining` (as RVQCodec):
{wav_hat, ids, loss, stats}; the official run weighs the commitment loss by 1000
(quantizer_weight) and the mel loss by 45 against MPD + MRD (+ DAC) discriminators.

Differences from the official code, none of which changes inference:
- The official feature extractor also builds EnCodec's SEANet *decoder*, which nothing uses
  (8.8 M parameters); it is not built here and its weights are dropped by the converter.
- The official LayerNorms are adaptive (`AdaLayerNorm`, 4 rows of scale/shift picked by a
  "bandwidth id" that training draws at random and inference fixes to 0, all four bandwidths being
  the same 6.6 kbps); here they are plain LayerNorms and the converter keeps row 0.

Official weights. The releases are pickled Lightning checkpoints (.ckpt), which vtok never
unpickles. Convert one once, in an environment you trust with that file:

    import torch, safetensors.torch
    ckpt = torch.load("WavTokenizer_small_320_24k_4096.ckpt", map_location="cpu", weights_only=True)
    keep = ("feature_extractor.", "backbone.", "head.")  # the generator; clone: safetensors refuses shared storage
    state = {k: v.clone() for k, v in ckpt["state_dict"].items() if k.startswith(keep)}
    safetensors.torch.save_file(state, "official.safetensors")

then `vtok.load("wavtokenizer-small-75", official_weights="official.safetensors")`;
`WavTokenizer.convert_official` maps the keys at load time. `weights_only=True` should suffice:
a pytorch-lightning 1.8 checkpoint of the official run holds only tensors, dicts, lists and
plain values (optimizer and LambdaLR states, ModelCheckpoint scores, loop counters, primitive
hyper-parameters; logged-metric records are saved only in fault-tolerant mode, which the official
configs leave off). Should a file still hold another global, strip it to "state_dict" first
(in that trusted environment), never in vtok.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .. import quantizers
from ..nn.seanet import SEANetEncoder
from ..nn.vocos import ISTFTHead, VocosBackbone
from ..quantizers import VQ, QuantizerOutput
from ..registry import register, register_model
from ..tokenizer import AudioTokenizer
from .chunking import decode_in_chunks, encode_in_chunks

# The official EncodecFeatures quantizer: one EnCodec-style EMA VQ layer, vq_bins 4096, vq_kmeans 200.
WAVTOKENIZER_QUANTIZER = {"kind": "vq", "codebook_size": 4096, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 200,
                          "dead_code_threshold": 2.0, "commitment_weight": 1.0, "gradient": "ste"}
# Training-only or unused parts of an official checkpoint: SEANet decoder, discriminators, loss modules.
OFFICIAL_UNUSED = ("feature_extractor.encodec.decoder.", "multiperioddisc.", "multiresddisc.", "dac.",
                   "dacdiscriminator.", "melspec_loss.")


@register_model
class WavTokenizer(AudioTokenizer):
    """SEANet encoder -> one VQ codebook per latent frame -> Vocos backbone -> ISTFT; ids (B, 1, T')."""

    paper = "WavTokenizer: an Efficient Acoustic Discrete Codec Tokenizer for Audio Language Modeling (Ji et al., 2024)"

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        channels: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        latent_dim: int = 512,
        lstm_layers: int = 2,
        dim: int = 768,
        intermediate_dim: int = 2304,
        num_layers: int = 12,
        n_fft: int | None = None,
        dropout: float = 0.1,
        quantizer: dict[str, Any] | None = None,
    ):
        quantizer = dict(WAVTOKENIZER_QUANTIZER if quantizer is None else quantizer)
        ratios = list(ratios)
        if not ratios or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ratios):
            raise ValueError(f"wavtokenizer: ratios must be a non-empty list of ints >= 1, got {ratios!r}")
        hop = math.prod(ratios)
        n_fft = 4 * hop if n_fft is None else n_fft
        super().__init__(
            sample_rate=sample_rate, channels=channels, ratios=ratios, latent_dim=latent_dim, lstm_layers=lstm_layers,
            dim=dim, intermediate_dim=intermediate_dim, num_layers=num_layers, n_fft=n_fft, dropout=dropout,
            quantizer=quantizer,
        )
        sizes = dict(sample_rate=sample_rate, channels=channels, latent_dim=latent_dim, dim=dim,
                     intermediate_dim=intermediate_dim, num_layers=num_layers)
        if any(v < 1 for v in sizes.values()) or lstm_layers < 0:
            raise ValueError(f"wavtokenizer: expected sizes >= 1 and lstm_layers >= 0, got {sizes}, lstm_layers={lstm_layers}")
        if quantizer.get("kind") != "vq":
            raise ValueError(f"wavtokenizer: needs a quantizer config of kind 'vq' (one codebook), got {quantizer}")
        if quantizer.get("dim", latent_dim) != latent_dim:
            raise ValueError(f"wavtokenizer: quantizer dim ({quantizer['dim']}) must equal latent_dim ({latent_dim})")

        self.encoder = SEANetEncoder(in_channels=1, dim=latent_dim, n_filters=channels, ratios=ratios, lstm_layers=lstm_layers)
        self.quantizer: VQ = quantizers.build(**{"dim": latent_dim, **quantizer})
        self.backbone = VocosBackbone(latent_dim, dim, intermediate_dim, num_layers, dropout)
        self.head = ISTFTHead(dim, n_fft, hop)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def hop_length(self) -> int:
        return math.prod(self.config["ratios"])

    # --- the three stages ----------------------------------------------------------------------
    def quantize(self, wav: Tensor) -> QuantizerOutput:
        """Audio (B,1,T) -> the quantizer's answer on T' = ceil(T / hop_length) frames, ids (B,T')."""
        return self.quantizer(self.encoder(wav).transpose(1, 2))

    def decode_latents(self, z_q: Tensor) -> Tensor:
        """Code vectors (B,T',D) -> audio (B,1,T' * hop_length), unclamped."""
        return self.head(self.backbone(z_q.transpose(1, 2))).unsqueeze(1)

    def forward(self, wav: Tensor) -> dict[str, Any]:
        """Training step: audio (B,1,T) -> {wav_hat (B,1,T) unclamped, ids (B,1,T'), loss, stats}; no input checks."""
        out = self.quantize(wav)
        wav_hat = self.decode_latents(out.z_q)[..., : wav.shape[-1]]
        return {"wav_hat": wav_hat, "ids": out.ids.unsqueeze(1), "loss": out.loss, "stats": out.stats}

    # --- encode / decode ------------------------------------------------------------------------
    def encode(self, wav: Tensor, chunk_seconds: float | None = None, overlap_seconds: float | None = None) -> Tensor:
        """Audio float (B,1,T) in [-1,1] at 24 kHz -> ids long (B,1,ceil(T / hop_length)).

        With chunk_seconds, encodes windows of chunk_seconds plus overlap_seconds of context on each
        side (default `chunk_overlap_seconds`), see `vtok.audio.chunking`.
        """
        self.check_audio(wav)
        with self.quantizer.inference():  # no EMA updates or dead-code restarts while encoding
            return encode_in_chunks(self, self._encode_ids, wav, chunk_seconds, overlap_seconds)

    def _encode_ids(self, wav: Tensor) -> Tensor:
        """Audio (B,1,T), unchecked -> ids (B,1,T')."""
        return self.quantize(wav).ids.unsqueeze(1)

    def decode(self, ids: Tensor, chunk_seconds: float | None = None, overlap_seconds: float | None = None) -> Tensor:
        """Ids integer (B,1,T') in [0, vocab_size) -> audio float (B,1,T' * hop_length) in [-1,1].

        With chunk_seconds, decodes windows with overlap_seconds of context on each side, crossfaded.
        """
        self.check_ids(ids)
        return decode_in_chunks(self, self._decode_ids, ids, chunk_seconds, overlap_seconds).clamp(-1.0, 1.0)

    def _decode_ids(self, ids: Tensor) -> Tensor:
        """Ids (B,1,T'), unchecked -> audio (B,1,T' * hop_length), unclamped."""
        return self.decode_latents(self.quantizer.decode_ids(ids[:, 0]))

    # --- official weights -----------------------------------------------------------------------
    @classmethod
    def convert_official(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """The official Lightning state dict (feature_extractor.encodec.*, backbone.*, head.*) -> vtok keys.

        Drops the unused SEANet decoder, the discriminators and loss modules and the ISTFT window;
        keeps row 0 (bandwidth id 0, the one inference uses) of each AdaLayerNorm.
        """
        codebook = "feature_extractor.encodec.quantizer.vq.layers.0._codebook."
        out: dict[str, Tensor] = {}
        for key, value in state.items():
            if key.startswith(OFFICIAL_UNUSED) or key == "head.istft.window":
                continue
            if key.startswith(codebook):
                out.update(_codebook_entry(key[len(codebook):], value))
                continue
            key = re.sub(r"^feature_extractor\.encodec\.encoder\.", "encoder.", key)
            key = re.sub(r"\.conv\.conv\.weight_g$", ".conv.parametrizations.weight.original0", key)
            key = re.sub(r"\.conv\.conv\.weight_v$", ".conv.parametrizations.weight.original1", key)
            key = re.sub(r"\.conv\.conv\.bias$", ".conv.bias", key)
            if key.startswith("backbone.") and re.search(r"\.norm\.(scale|shift)\.weight$", key):
                key, value = key.replace(".scale.weight", ".weight").replace(".shift.weight", ".bias"), value[0]
            out[key] = value
        return out


def _codebook_entry(name: str, value: Tensor) -> dict[str, Tensor]:
    """One buffer of the official EuclideanCodebook -> the vector-quantize-pytorch VQ buffer it becomes."""
    if name == "inited":
        return {"quantizer.vq._codebook.initted": torch.tensor(bool(value.reshape(-1)[0]))}
    if name in ("embed", "embed_avg", "cluster_size"):  # (K, D) / (K,) -> one codebook head: (1, K, D) / (1, K)
        return {f"quantizer.vq._codebook.{name}": value[None].clone()}
    return {f"feature_extractor.encodec.quantizer.vq.layers.0._codebook.{name}": value}  # unknown: strict load names it


def paper_config(ratios: list[int]) -> dict[str, Any]:
    """The official 24 kHz configuration for encoder strides `ratios` (n_fft = 4 * hop)."""
    return {"sample_rate": 24000, "channels": 32, "ratios": ratios, "latent_dim": 512, "lstm_layers": 2, "dim": 768,
            "intermediate_dim": 2304, "num_layers": 12, "n_fft": 4 * math.prod(ratios), "dropout": 0.1,
            "quantizer": dict(WAVTOKENIZER_QUANTIZER)}


FRAME40, FRAME75 = [6, 5, 5, 4], [8, 5, 4, 2]
RELEASES = [
    ("wavtokenizer-small-40", FRAME40, "novateur/WavTokenizer", "WavTokenizer_small_600_24k_4096.ckpt",
     "LibriTTS speech, 40 tokens/s (hop 600), 4096 codes = 480 bps"),
    ("wavtokenizer-small-75", FRAME75, "novateur/WavTokenizer", "WavTokenizer_small_320_24k_4096.ckpt",
     "LibriTTS speech, 75 tokens/s (hop 320), 4096 codes = 900 bps"),
    ("wavtokenizer-medium-75", FRAME75, "novateur/WavTokenizer-medium-speech-75token",
     "wavtokenizer_medium_speech_320_24k_v2.ckpt", "10k hours speech, 75 tokens/s (hop 320), 4096 codes = 900 bps"),
    ("wavtokenizer-large-40", FRAME40, "novateur/WavTokenizer-large-unify-40token", "wavtokenizer_large_unify_600_24k.ckpt",
     "80k hours speech, audio and music, 40 tokens/s (hop 600), 4096 codes = 480 bps"),
    ("wavtokenizer-large-75", FRAME75, "novateur/WavTokenizer-large-speech-75token", "wavtokenizer_large_speech_320_v2.ckpt",
     "80k hours speech, audio and music, 75 tokens/s (hop 320), 4096 codes = 900 bps"),
]
for _name, _ratios, _repo, _file, _about in RELEASES:
    register(_name, WavTokenizer, paper_config(_ratios), official=_repo, official_file=_file,
             description=f"WavTokenizer {_about}; official weights converted at load")
register(
    "wavtokenizer-tiny", WavTokenizer,
    {"sample_rate": 24000, "channels": 4, "ratios": [4, 4], "latent_dim": 16, "lstm_layers": 1, "dim": 32,
     "intermediate_dim": 64, "num_layers": 2, "n_fft": 64, "dropout": 0.1,
     "quantizer": {"kind": "vq", "codebook_size": 64, "decay": 0.99, "dead_code_threshold": 2.0,
                   "commitment_weight": 1.0, "gradient": "ste"}},
    description="tiny config for tests: hop 16, 64 codes, 2 ConvNeXt blocks of width 32",
)
register(
    "wavtokenizer-speech-24k", WavTokenizer,
    {"sample_rate": 24000, "channels": 16, "ratios": [5, 4, 3, 2], "latent_dim": 64, "lstm_layers": 1, "dim": 128,
     "intermediate_dim": 384, "num_layers": 4, "n_fft": 480, "dropout": 0.1,
     "quantizer": {"kind": "vq", "codebook_size": 1024, "decay": 0.99, "dead_code_threshold": 2.0,
                   "commitment_weight": 1.0, "gradient": "ste"}},
    description="shipped: 24 kHz speech, hop 120 (200 tokens/s), one 1024-code VQ = 2 kbps, trained on CPU by "
                "recipes/wavtokenizer/wavtokenizer-speech-24k.yaml",
    tags=("audio", "speech", "shipped"),
)
