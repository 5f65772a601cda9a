"""Lightning training of vtok tokenizers (models never import Lightning; this package does)."""
from .audio_data import AudioDataModule
from .audio_module import AudioCodecTraining
from .base import TokenizerTraining
from .callbacks import WeightEMA
from .data import ImageDataModule, ImageFolder, ResumableSampler
from .image_module import ImageTokenizerTraining

__all__ = ["AudioCodecTraining", "AudioDataModule", "ImageDataModule", "ImageFolder", "ResumableSampler",
           "ImageTokenizerTraining", "TokenizerTraining", "WeightEMA"]
