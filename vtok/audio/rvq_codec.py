"""An EnCodec-line RVQ audio codec (Défossez et al. 2022): SEANet conv encoder, residual VQ, SEANet decoder.

Config (plain JSON; EnCodec 24 kHz values in brackets):
    sample_rate   rate of the mono input, Hz [24000]
    channels      base width of the SEANet stacks, doubled at each downsampling [32]
    ratios        up-sampling ratios in decoder order; hop_length = prod(ratios) [8, 5, 4, 2]
    latent_dim    channels D of the latent frames that are quantized [128]
    lstm_layers   LSTM layers (with a skip) at the bottleneck of encoder and decoder; 0 = none [2]
    causal        left-only padding in every conv, so no output depends on later samples [true]
    activation    "elu" (EnCodec) or "snake" (DAC's periodic x + sin²(αx)/α, faster to learn pitch) ["elu"]
    quantizer     keywords for `vtok.quantizers.build`, kind "rvq", `dim` defaults to latent_dim
                  [8 x 1024 codes, quantizer dropout; the paper trains 32 levels for 24 kbps]

Audio goes in as float (B,1,T) in [-1,1]; T is padded at the end to a multiple of hop_length,
so T' = ceil(T / hop_length) frames of Q ids each. With quantizer dropout one model serves
every bitrate: `encode(wav, num_codebooks=q)` keeps the first q RVQ levels, `decode` takes any q.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .. import quantizers
from ..nn.seanet import SEANetDecoder, SEANetEncoder
from ..quantizers import RVQ, QuantizerOutput
from ..registry import register, register_model
from ..tokenizer import AudioTokenizer
from .chunking import decode_in_chunks, encode_in_chunks

DEFAULT_QUANTIZER = {"kind": "rvq", "codebook_size": 1024, "num_codebooks": 8, "quantizer_dropout": True}
# EnCodec's codebook training: EMA decay 0.99, k-means init (50 iters), dead codes (EMA count < 2) reseeded.
ENCODEC_QUANTIZER = {**DEFAULT_QUANTIZER, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                     "dead_code_threshold": 2.0, "commitment_weight": 1.0}


@register_model
class RVQCodec(AudioTokenizer):
    """SEANet encoder -> RVQ on each latent frame -> SEANet decoder; ids (B, Q, T'), level-major."""

    paper = "High Fidelity Neural Audio Compression (EnCodec, Défossez et al., 2022)"

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        latent_dim: int = 128,
        lstm_layers: int = 2,
        causal: bool = False,
        activation: str = "elu",
        quantizer: dict[str, Any] | None = None,
    ):
        quantizer = dict(DEFAULT_QUANTIZER if quantizer is None else quantizer)
        ratios = list(ratios)
        super().__init__(
            sample_rate=sample_rate, channels=channels, ratios=ratios, latent_dim=latent_dim,
            lstm_layers=lstm_layers, causal=causal, activation=activation, quantizer=quantizer,
        )
        if sample_rate < 1 or channels < 1 or latent_dim < 1 or lstm_layers < 0:
            raise ValueError(
                "rvq-codec: expected sample_rate, channels, latent_dim >= 1 and lstm_layers >= 0, got "
                f"sample_rate={sample_rate}, channels={channels}, latent_dim={latent_dim}, lstm_layers={lstm_layers}"
            )
        if not ratios or any(not isinstance(r, int) or r < 1 for r in ratios):
            raise ValueError(f"rvq-codec: ratios must be a non-empty list of ints >= 1, got {ratios!r}")
        if quantizer.get("kind") != "rvq":
            raise ValueError(f"rvq-codec: needs a quantizer config of kind 'rvq', got {quantizer}")
        if quantizer.get("dim", latent_dim) != latent_dim:
            raise ValueError(f"rvq-codec: quantizer dim ({quantizer['dim']}) must equal latent_dim ({latent_dim})")

        seanet = dict(dim=latent_dim, n_filters=channels, ratios=ratios, lstm_layers=lstm_layers, causal=causal, act=activation)
        self.encoder = SEANetEncoder(in_channels=1, **seanet)
        self.quantizer: RVQ = quantizers.build(**{"dim": latent_dim, **quantizer})
        self.decoder = SEANetDecoder(out_channels=1, **seanet)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    @property
    def hop_length(self) -> int:
        return math.prod(self.config["ratios"])

    @property
    def causal(self) -> bool:
        return bool(self.config["causal"])

    def quantize(self, wav: Tensor) -> QuantizerOutput:
        """Audio (B,1,T) -> the quantizer's answer on T' = ceil(T / hop_length) frames, ids (B,T',Q)."""
        wav = F.pad(wav, (0, -wav.shape[-1] % self.hop_length))
        return self.quantizer(self.encoder(wav).transpose(1, 2))

    def decode_latents(self, z_q: Tensor) -> Tensor:
        """Code vectors (B,T',D) -> audio (B,1,T' * hop_length), unclamped."""
        return self.decoder(z_q.transpose(1, 2))

    def forward(self, wav: Tensor) -> dict[str, Any]:
        """Training step: audio (B,1,T) -> {wav_hat (B,1,T) unclamped, ids (B,Q,T'), loss, stats}.

        No input checks here: they cost a device sync per step; `encode` checks. In training,
        levels dropped by quantizer dropout have id -1.
        """
        out = self.quantize(wav)
        wav_hat = self.decode_latents(out.z_q)[..., : wav.shape[-1]]
        return {"wav_hat": wav_hat, "ids": out.ids.transpose(1, 2), "loss": out.loss, "stats": out.stats}

    # --- encode / decode ------------------------------------------------------------------------
    def encode(self, wav: Tensor, num_codebooks: int | None = None, chunk_seconds: float | None = None,
               overlap_seconds: float | None = None) -> Tensor:
        """Audio float (B,1,T) in [-1,1] -> ids long (B,q,T'), the first q (default Q) RVQ levels.

        With chunk_seconds, encodes windows of chunk_seconds plus overlap_seconds of context
        (default `chunk_overlap_seconds`; left only if causal), see `vtok.audio.chunking`.
        """
        q = self.num_codebooks if num_codebooks is None else num_codebooks
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= self.num_codebooks:
            raise ValueError(f"rvq-codec: num_codebooks must be an int in [1, {self.num_codebooks}], got {num_codebooks!r}")
        self.check_audio(wav)
        # quantizer dropout (ids -1) and EMA updates belong to training steps, not to encoding
        with self.quantizer.inference():
            ids = encode_in_chunks(self, lambda w: self._encode_ids(w)[:, :q], wav, chunk_seconds, overlap_seconds)
        return ids.contiguous()

    def _encode_ids(self, wav: Tensor) -> Tensor:
        """Audio (B,1,T), unchecked -> ids (B,Q,T')."""
        return self.quantize(wav).ids.transpose(1, 2)

    def decode(self, ids: Tensor, chunk_seconds: float | None = None, overlap_seconds: float | None = None) -> Tensor:
        """Ids integer (B,q,T') in [0, vocab_size), 1 <= q <= Q -> audio float (B,1,T' * hop_length) in [-1,1].

        With chunk_seconds, decodes windows with overlap_seconds of context and stitches them (as `encode`).
        """
        self.check_ids(ids)
        return decode_in_chunks(self, self._decode_ids, ids, chunk_seconds, overlap_seconds).clamp(-1.0, 1.0)

    def _decode_ids(self, ids: Tensor) -> Tensor:
        """Ids (B,q,T'), unchecked -> audio (B,1,T' * hop_length), unclamped."""
        return self.decode_latents(self.quantizer.decode_ids(ids.transpose(1, 2)))


register(
    "rvq-codec-24k", RVQCodec,
    {"sample_rate": 24000, "channels": 32, "ratios": [8, 5, 4, 2], "latent_dim": 128, "lstm_layers": 2,
     "causal": True, "quantizer": dict(ENCODEC_QUANTIZER)},
    description="EnCodec-style 24 kHz causal codec, hop 320 (75 frames/s), 8 x 1024 RVQ codes = 6 kbps",
)
register(
    "rvq-codec-16k", RVQCodec,
    {"sample_rate": 16000, "channels": 32, "ratios": [8, 5, 4, 2], "latent_dim": 128, "lstm_layers": 2,
     "causal": True, "quantizer": dict(ENCODEC_QUANTIZER)},
    description="EnCodec-style 16 kHz causal codec, hop 320 (50 frames/s), 8 x 1024 RVQ codes = 4 kbps",
)
register(
    "rvq-codec-tiny", RVQCodec,
    {"sample_rate": 16000, "channels": 8, "ratios": [4, 4], "latent_dim": 16, "lstm_layers": 0,
     "quantizer": {"kind": "rvq", "codebook_size": 64, "num_codebooks": 4, "quantizer_dropout": True}},
    description="tiny config for tests: hop 16, 4 x 64 RVQ codes",
)
register(
    "rvq-codec-speech-16k", RVQCodec,
    {"sample_rate": 16000, "channels": 16, "ratios": [5, 4, 4, 2], "latent_dim": 64, "lstm_layers": 1, "activation": "snake",
     "quantizer": {"kind": "rvq", "codebook_size": 1024, "num_codebooks": 8, "quantizer_dropout": True, "decay": 0.99,
                   "kmeans_init": True, "kmeans_iters": 10, "dead_code_threshold": 2.0, "commitment_weight": 1.0}},
    description="shipped: 16 kHz speech, hop 160 (100 frames/s), 1..8 x 1024 RVQ codes = 1..8 kbps, trained on CPU by "
                "recipes/rvq_codec/rvq-codec-speech-16k.yaml",
    tags=("audio", "speech", "shipped"),
)
