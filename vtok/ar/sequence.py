"""How token shards become GPT sequences, and generated sequences become tokenizer ids again.

Per stream the GPT vocabulary is the tokenizer's codes [0, V) (or [0, Q*V) when Q codebooks are
flattened), then BOS, EOS, PAD, then one length token per possible length for variable-length
image tokenizers. Layouts (one item):

- 1D image tokens, fixed length K:        BOS t1 .. tK EOS
- variable length (One-D-Piece, FlexTok): BOS LEN_k t1 .. tk EOS; training draws k ~ U{1..K}
  (the tokenizer's ordered prefix), the length token is an input, never a target
- single-codebook audio (or flattened):   BOS t1 .. tT EOS, random crops of long utterances
- Q codebooks, delay pattern (MusicGen):  Q parallel streams, stream q delayed by q steps, PAD in
  the gaps, a BOS column in front; PAD targets are ignored
"""
from __future__ import annotations

import random
from typing import Any, Callable

import torch
from torch import Tensor

from .patterns import delay_deinterleave, delay_interleave, flatten_codebooks, unflatten_codebooks

IGNORE = -100


class SequenceFormat:
    """Sequence layout for a shard set's meta: vocab, specials, pattern, lengths; JSON round trip via `config`."""

    def __init__(self, vocab_size: int, codebooks: int = 1, pattern: str = "delay", max_tokens: int | None = None,
                 variable_length: bool = False, block_size: int = 256):
        if pattern not in ("delay", "flatten"):
            raise ValueError(f"pattern: expected 'delay' or 'flatten', got {pattern!r}")
        if variable_length and not max_tokens:
            raise ValueError("variable_length needs max_tokens (the tokenizer's largest token count)")
        self.config = {"vocab_size": vocab_size, "codebooks": codebooks, "pattern": pattern, "max_tokens": max_tokens,
                       "variable_length": variable_length, "block_size": block_size}
        self.codebooks, self.pattern, self.block_size = codebooks, pattern, block_size
        self.parallel = codebooks > 1 and pattern == "delay"
        self.code_vocab = vocab_size * (codebooks if codebooks > 1 and pattern == "flatten" else 1)
        self.tokenizer_vocab = vocab_size
        self.bos, self.eos, self.pad = self.code_vocab, self.code_vocab + 1, self.code_vocab + 2
        self.max_tokens, self.variable_length = max_tokens, variable_length
        self.stream_vocab = self.code_vocab + 3 + (max_tokens if variable_length else 0)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], pattern: str = "delay", block_size: int = 256) -> "SequenceFormat":
        """The layout for shards written by `vtok export` (variable length when the tokenizer supports it)."""
        variable = bool(meta.get("variable_length")) or (
            meta["modality"] == "image" and meta.get("architecture") in ("OneDPiece", "FlexTok"))
        return cls(meta["vocab_size"], meta.get("codebooks", 1), pattern, meta.get("tokens_per_item"), variable, block_size)

    @property
    def num_streams(self) -> int:
        return self.codebooks if self.parallel else 1

    def length_token(self, k: int) -> int:
        """The id that asks for k tokens (variable-length image tokenizers), k in 1..max_tokens."""
        if not self.variable_length or not 1 <= k <= self.max_tokens:
            raise ValueError(f"num_tokens: expected 1..{self.max_tokens} for a variable-length tokenizer, got {k}")
        return self.code_vocab + 3 + k - 1

    # --- training -------------------------------------------------------------------------------
    def training_pair(self, codes: Tensor, rng: random.Random) -> tuple[Tensor, Tensor]:
        """One item's codes ((L,) or (Q,T)) -> (input, target) long tensors of equal length (last dim <= block_size)."""
        if self.parallel:
            return self._parallel_pair(codes, rng)
        if codes.ndim == 2:  # Q codebooks, flattened
            codes = flatten_codebooks(codes[None], self.tokenizer_vocab)[0]
        head = [self.bos]
        if self.variable_length:
            k = rng.randint(1, codes.shape[-1])
            codes, head = codes[:k], [self.bos, self.length_token(k)]
        seq = torch.cat([torch.tensor(head), codes.long(), torch.tensor([self.eos])])
        if len(seq) - 1 > self.block_size:  # a long utterance: a random window
            start = rng.randint(0, len(seq) - 1 - self.block_size)
            seq = seq[start : start + self.block_size + 1]
            head = []
        inputs, targets = seq[:-1].clone(), seq[1:].clone()
        if len(head) == 2:
            targets[0] = IGNORE  # the length token is asked for, not predicted
        return inputs, targets

    def _parallel_pair(self, codes: Tensor, rng: random.Random) -> tuple[Tensor, Tensor]:
        q, t = codes.shape
        window = self.block_size - q + 1  # frames whose delayed streams fit in block_size positions
        if t > window:
            start = rng.randint(0, t - window)
            codes = codes[:, start : start + window]
        delayed = delay_interleave(codes[None].long(), self.pad)[0]  # (Q, T+Q-1)
        seq = torch.cat([torch.full((q, 1), self.bos), delayed], dim=1)
        inputs, targets = seq[:, :-1].clone(), seq[:, 1:].clone()
        targets[targets == self.pad] = IGNORE
        return inputs, targets

    def collate(self, pairs: list[tuple[Tensor, Tensor, int]]) -> dict[str, Tensor]:
        """Right-pad (input, target, label) triples into a batch; padded targets are ignored."""
        length = max(p[0].shape[-1] for p in pairs)
        shape = (len(pairs), self.codebooks, length) if self.parallel else (len(pairs), length)
        inputs, targets = torch.full(shape, self.pad), torch.full(shape, IGNORE)
        for i, (x, y, _) in enumerate(pairs):
            inputs[i, ..., : x.shape[-1]], targets[i, ..., : y.shape[-1]] = x, y
        return {"input": inputs, "target": targets, "label": torch.tensor([p[2] for p in pairs])}

    # --- sampling -------------------------------------------------------------------------------
    def prompt(self, batch: int, num_tokens: int | None = None) -> Tensor:
        """The prefix every sample starts from: (B,1) / (B,2) with a length token / (B,Q,1) parallel streams."""
        if self.parallel:
            return torch.full((batch, self.codebooks, 1), self.bos)
        head = [self.bos] + ([self.length_token(num_tokens)] if self.variable_length else [])
        return torch.tensor(head).repeat(batch, 1)

    def steps(self, frames: int) -> int:
        """Generated positions needed for `frames` code positions (plus the delay tail for parallel streams)."""
        if self.parallel:
            return frames + self.codebooks - 1
        return frames * (self.codebooks if self.codebooks > 1 else 1)

    def allowed(self, frames: int) -> Callable[[int, Tensor], Tensor]:
        """A logits hook for GPT.generate: only code ids (and PAD in the delay gaps of parallel streams)."""
        def mask(step: int, logits: Tensor) -> Tensor:
            logits = logits.clone()
            logits[..., self.code_vocab :] = float("-inf")
            if self.parallel:  # stream q holds a code at steps q .. q + frames - 1, PAD elsewhere
                for q in range(self.codebooks):
                    if not q <= step < q + frames:
                        logits[:, q, :] = float("-inf")
                        logits[:, q, self.pad] = 0.0
            return logits
        return mask

    def to_codes(self, tokens: Tensor, prompt_length: int, frames: int) -> Tensor:
        """Generated sequences -> tokenizer ids: (B,K) images / (B,Q,T) audio (Q=1 included for audio)."""
        new = tokens[..., prompt_length:]
        if self.parallel:
            return delay_deinterleave(new[..., : frames + self.codebooks - 1])
        if self.codebooks > 1:
            return unflatten_codebooks(new[:, : frames * self.codebooks], self.codebooks, self.tokenizer_vocab)
        return new[:, :frames]
