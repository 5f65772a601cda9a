"""Autoregressive modelling of tokenizer ids: a compact GPT and the layouts of multi-codebook tokens."""
from .gpt import GPT
from .patterns import delay_deinterleave, delay_interleave, flatten_codebooks, unflatten_codebooks

__all__ = ["GPT", "delay_interleave", "delay_deinterleave", "flatten_codebooks", "unflatten_codebooks"]
