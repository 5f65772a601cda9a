"""Lightning training of vtok tokenizers (models never import Lightning; this package does)."""
from .data import ImageDataModule, ImageFolder, ResumableSampler
from .image_module import ImageTokenizerTraining

__all__ = ["ImageDataModule", "ImageFolder", "ResumableSampler", "ImageTokenizerTraining"]
