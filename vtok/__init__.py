"""vtok: discrete tokenizers for images and audio behind one API."""
from . import quantizers
from .hub import HubUnavailableError, load
from .registry import create, list_models, register
from .tokenizer import AudioTokenizer, ImageTokenizer, Tokenizer

from . import assets, audio, image  # noqa: E402,F401  (image/audio fill the registry)

__version__ = "0.1.0"

__all__ = [
    "create", "load", "list_models", "register", "Tokenizer", "ImageTokenizer", "AudioTokenizer",
    "quantizers", "HubUnavailableError", "__version__",
]
