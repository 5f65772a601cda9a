"""Metrics: token and codebook statistics (image and audio quality metrics come with `vtok eval`)."""
from .codebook import token_statistics, zipf_fit

__all__ = ["token_statistics", "zipf_fit"]
