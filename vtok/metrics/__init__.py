"""Metrics: token and codebook statistics; image (PSNR/SSIM/LPIPS/rFID) and audio (PESQ/STOI/MOS/WER/...) quality."""
from .audio import AudioMetrics, DistillMOS, DNSMOS, WhisperASR, mel_distance, pesq_wb, si_sdr, stoi, word_error_rate
from .codebook import token_statistics, zipf_fit
from .image import RFID, ImageMetrics, TFInception, load_lpips, lpips_distance, psnr, ssim
from .utmos import UTMOS22Strong, convert_utmos_checkpoint, load_utmos
from .weights import MissingWeightsError

__all__ = [
    "AudioMetrics", "DistillMOS", "DNSMOS", "WhisperASR", "mel_distance", "pesq_wb", "si_sdr", "stoi", "word_error_rate",
    "token_statistics", "zipf_fit",
    "RFID", "ImageMetrics", "TFInception", "load_lpips", "lpips_distance", "psnr", "ssim",
    "UTMOS22Strong", "convert_utmos_checkpoint", "load_utmos", "MissingWeightsError",
]
