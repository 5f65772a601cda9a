"""Lightning training of vtok tokenizers (models never import Lightning; this package does)."""
from .ar_data import TokenDataModule
from .ar_module import ARTraining
from .audio_data import AudioDataModule
from .audio_module import AudioCodecTraining
from .base import TokenizerTraining
from .callbacks import WeightEMA
from .dualtoken_module import DualTokenTraining
from .data import ImageDataModule, ImageFolder, ResumableSampler
from .flextok_module import FlexTokTraining
from .image_module import ImageTokenizerTraining
from .tokenflow_module import TokenFlowTraining

__all__ = ["ARTraining", "DualTokenTraining", "FlexTokTraining", "TokenDataModule", "AudioCodecTraining", "AudioDataModule", "ImageDataModule", "ImageFolder", "ResumableSampler",
           "ImageTokenizerTraining", "TokenFlowTraining", "TokenizerTraining", "WeightEMA"]
