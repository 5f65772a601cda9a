"""A compact decoder-only GPT over tokenizer ids: pre-norm, RoPE, SDPA, KV cache, class-conditional CFG.

Reads top to bottom: config checks, RoPE, attention with an optional KV cache, blocks, the model
(multi-stream embeddings and heads, class prefix, loss), sampling, Hub I/O.

The caller lays out the ids (BOS, EOS, a length token, delay pads): `vocab_size` counts every id
a stream may hold. Q parallel streams (the delay pattern of `vtok.ar.patterns`) enter as the sum of
Q embeddings and leave through Q heads; one stream is a plain sequence with a tied head.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from safetensors.torch import load_file
from torch import Tensor, nn

TAGS = ["vtok", "autoregressive", "gpt"]


# --- config ---------------------------------------------------------------------------------
def _check_config(c: dict[str, Any]) -> None:
    """Raise ValueError for a config the model cannot be built from."""
    for key in ("vocab_size", "num_streams", "block_size", "n_layer", "n_head", "n_embd"):
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] < 1:
            raise ValueError(f"GPT: expected {key} to be an int >= 1, got {c[key]!r}")
    if not isinstance(c["num_classes"], int) or isinstance(c["num_classes"], bool) or c["num_classes"] < 0:
        raise ValueError(f"GPT: expected num_classes to be an int >= 0, got {c['num_classes']!r}")
    head_dim, rem = divmod(c["n_embd"], c["n_head"])
    if rem or head_dim % 2:
        raise ValueError(f"GPT: expected n_embd divisible by n_head with an even head size (RoPE), "
                         f"got n_embd={c['n_embd']}, n_head={c['n_head']}")
    if not 0.0 <= c["dropout"] < 1.0 or not 0.0 <= c["class_dropout"] <= 1.0:
        raise ValueError(f"GPT: expected dropout in [0, 1) and class_dropout in [0, 1], "
                         f"got {c['dropout']!r}, {c['class_dropout']!r}")
    if not c["rope_base"] > 0:
        raise ValueError(f"GPT: expected rope_base > 0, got {c['rope_base']!r}")
    for key in ("tokenizer", "tokenizer_hash"):
        if c[key] is not None and not isinstance(c[key], str):
            raise ValueError(f"GPT: expected {key} to be a str or None, got {type(c[key]).__name__}")


def _is_int_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)


# --- RoPE -----------------------------------------------------------------------------------
def rope_tables(positions: int, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos, sin (positions, head_dim) of the rotary angles, halves repeated (rotate-half layout)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B,H,S,hd) by the angles of its S positions, cos/sin (S,hd)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((-x2, x1), dim=-1) * sin.to(x.dtype)


# --- blocks ---------------------------------------------------------------------------------
class KVCache:
    """Preallocated keys and values per layer, (B, H, block_size, head_dim) each; `pos` positions filled."""

    def __init__(self, n_layer: int, batch: int, n_head: int, block_size: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (batch, n_head, block_size, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.pos = 0


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention with RoPE: (B,S,D) -> (B,S,D), optionally through a KV cache."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: tuple[Tensor, Tensor] | None = None,
                pos: int = 0) -> Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, s > 1
        if cache is not None:
            cache_k, cache_v = cache
            cache_k[:, :, pos : pos + s] = k
            cache_v[:, :, pos : pos + s] = v
            k, v = cache_k[:, :, : pos + s], cache_v[:, :, : pos + s]
            if pos > 0 and s > 1:  # is_causal aligns top-left; new queries at pos.. see all earlier keys
                mask = torch.ones(s, pos + s, dtype=torch.bool, device=x.device).tril(diagonal=pos)
                causal = False
            elif pos > 0:
                causal = False  # one new query sees every cached key
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
        )
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, s, d)))


class MLP(nn.Module):
    """Linear -> GELU -> Linear (4x wide) -> dropout."""

    def __init__(self, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: tuple[Tensor, Tensor] | None = None,
                pos: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin, cache, pos)
        return x + self.mlp(self.ln_2(x))


# --- the model ------------------------------------------------------------------------------
class GPT(nn.Module, PyTorchModelHubMixin, library_name="vtok", tags=TAGS):
    """Decoder-only transformer over ids (B,S) -> logits (B,S,V), or Q streams (B,Q,S) -> (B,Q,S,V).

    With num_classes > 0 a class embedding is a prefix position (the null class `num_classes`
    for classifier-free guidance); logits come back for the id positions only, and
    logits[..., i, :] predicts targets[..., i] (the caller shifts ids into targets).
    """

    def __init__(self, vocab_size: int, num_streams: int = 1, block_size: int = 256, n_layer: int = 6,
                 n_head: int = 6, n_embd: int = 384, dropout: float = 0.0, num_classes: int = 0,
                 class_dropout: float = 0.1, rope_base: float = 10000.0, bias: bool = False,
                 tokenizer: str | None = None, tokenizer_hash: str | None = None):
        super().__init__()
        self.config = dict(
            vocab_size=vocab_size, num_streams=num_streams, block_size=block_size, n_layer=n_layer,
            n_head=n_head, n_embd=n_embd, dropout=dropout, num_classes=num_classes,
            class_dropout=class_dropout, rope_base=rope_base, bias=bias, tokenizer=tokenizer,
            tokenizer_hash=tokenizer_hash,
        )
        _check_config(self.config)
        self.vocab_size, self.num_streams, self.block_size = vocab_size, num_streams, block_size
        self.num_classes, self.class_dropout = num_classes, class_dropout
        self.n_layer, self.n_head, self.head_dim = n_layer, n_head, n_embd // n_head

        self.wte = nn.Embedding(num_streams * vocab_size, n_embd)  # id i of stream q at row q*V + i
        self.cls_emb = nn.Embedding(num_classes + 1, n_embd) if num_classes else None  # last row: null class
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        # one stream: the head is tied to wte (no parameter of its own, so one key in the state dict)
        self.head = nn.Linear(n_embd, num_streams * vocab_size, bias=False) if num_streams > 1 else None
        cos, sin = rope_tables(block_size, self.head_dim, rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # residual projections scaled as in GPT-2
            if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def num_params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    # --- input checks -----------------------------------------------------------------------
    def _check_idx(self, x: Any, name: str, allow_empty: bool = False) -> Tensor:
        """x as long (B,S) or (B,Q,S) with ids in [0, vocab_size); ValueError otherwise."""
        q, v = self.num_streams, self.vocab_size
        shape = "(B, S)" if q == 1 else f"(B, {q}, S)"
        if not _is_int_tensor(x):
            got = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected an integer tensor {shape}, got {got}")
        if x.ndim != (2 if q == 1 else 3) or (q > 1 and x.shape[1] != q) or x.shape[0] == 0:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
        if x.shape[-1] == 0 and not allow_empty:
            raise ValueError(f"{name}: expected at least one position, got shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= v):
            raise ValueError(f"{name}: expected ids in [0, {v}), got range [{int(x.min())}, {int(x.max())}]")
        return x.long()

    def _check_labels(self, labels: Any, batch: int, device: torch.device) -> Tensor | None:
        """Class labels (B,) for the prefix (null class when None), or None for an unconditional model."""
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("labels: expected None for an unconditional GPT (num_classes=0), got labels")
            return None
        if labels is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if not _is_int_tensor(labels) or tuple(labels.shape) != (batch,):
            got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels: expected an integer tensor of shape ({batch},), got {got}")
        if int(labels.min()) < 0 or int(labels.max()) > self.num_classes:
            raise ValueError(f"labels: expected classes in [0, {self.num_classes}] ({self.num_classes} = null), "
                             f"got range [{int(labels.min())}, {int(labels.max())}]")
        return labels.long()

    def _check_length(self, positions: int, what: str) -> None:
        if positions > self.block_size:
            raise ValueError(f"{what}: expected at most block_size = {self.block_size} positions "
                             f"(class prefix included), got {positions}")

    def drop_labels(self, labels: Tensor) -> Tensor:
        """(B,) -> (B,): in training mode each label becomes the null class with probability class_dropout."""
        if not self.training or self.class_dropout == 0.0:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < self.class_dropout
        return labels.masked_fill(drop, self.num_classes)

    # --- the pass ---------------------------------------------------------------------------
    def _embed(self, idx: Tensor, labels: Tensor | None) -> Tensor:
        """idx (B,S) or (B,Q,S) [+ labels (B,)] -> (B, P+S, D), P = 1 with a class prefix."""
        if self.num_streams == 1:
            x = self.wte(idx)
        else:
            offsets = torch.arange(self.num_streams, device=idx.device)[:, None] * self.vocab_size
            x = self.wte(idx + offsets).sum(dim=1)
        if labels is not None:
            x = torch.cat((self.cls_emb(labels)[:, None], x), dim=1)
        return x

    def _hidden(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """Embeddings (B,S,D) at positions cache.pos.. (0 without a cache) -> final-norm states (B,S,D)."""
        pos = 0 if cache is None else cache.pos
        s = x.shape[1]
        cos, sin = self.rope_cos[pos : pos + s], self.rope_sin[pos : pos + s]
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, None if cache is None else (cache.k[i], cache.v[i]), pos)
        if cache is not None:
            cache.pos += s
        return self.ln_f(x)

    def _head(self, h: Tensor) -> Tensor:
        """(B,S,D) -> logits (B,S,V), or (B,Q,S,V) for Q streams."""
        if self.head is None:
            return F.linear(h, self.wte.weight)
        b, s, _ = h.shape
        return self.head(h).view(b, s, self.num_streams, self.vocab_size).permute(0, 2, 1, 3)

    def forward(self, idx: Tensor, labels: Tensor | None = None, targets: Tensor | None = None,
                ignore_index: int = -100) -> tuple[Tensor, Tensor | None]:
        """idx (B,S) | (B,Q,S) -> (logits (B,S,V) | (B,Q,S,V), mean cross-entropy in nats vs targets or None)."""
        idx = self._check_idx(idx, "idx")
        labels = self._check_labels(labels, idx.shape[0], idx.device)
        prefix = 0 if labels is None else 1
        self._check_length(idx.shape[-1] + prefix, "idx")
        if labels is not None:
            labels = self.drop_labels(labels)
        logits = self._head(self._hidden(self._embed(idx, labels))[:, prefix:])
        if targets is None:
            return logits, None
        if not _is_int_tensor(targets) or targets.shape != idx.shape:
            got = f"{targets.dtype} {tuple(targets.shape)}" if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets: expected an integer tensor shaped like idx {tuple(idx.shape)}, got {got}")
        kept = targets[targets != ignore_index]
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= self.vocab_size):
            raise ValueError(f"targets: expected ids in [0, {self.vocab_size}) or ignore_index={ignore_index}, "
                             f"got range [{int(kept.min())}, {int(kept.max())}]")
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size).float(), targets.reshape(-1).long(),
                               ignore_index=ignore_index)
        return logits, loss

    # --- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prefix: Tensor, max_new_tokens: int, labels: Tensor | None = None, cfg_scale: float = 1.0,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 use_cache: bool = True, generator: torch.Generator | None = None,
                 allowed: Callable[[int, Tensor], Tensor] | None = None) -> Tensor:
        """prefix (B,S0) | (B,Q,S0) -> (B,S0+N) | (B,Q,S0+N): N = max_new_tokens positions sampled after it.

        temperature 0 is greedy. With labels and cfg_scale != 1 the logits are
        uncond + cfg_scale * (cond - uncond). `allowed(step, logits)` (step = 0..N-1, logits (B,V) or
        (B,Q,V) after guidance) returns the logits to sample from, e.g. with forbidden ids at -inf.
        use_cache=False recomputes the whole sequence every step (the reference path). The model
        runs in eval mode here (no dropout, no label dropout) and is put back as it was.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens: expected an int >= 0, got {max_new_tokens!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature: expected >= 0 (0 = greedy), got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k: expected an int >= 1 or None, got {top_k!r}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p: expected a float in (0, 1] or None, got {top_p!r}")
        # with a class prefix the first id can be sampled from the class alone
        idx = self._check_idx(prefix, "prefix", allow_empty=self.num_classes > 0)
        b = idx.shape[0]
        guided = labels is not None and cfg_scale != 1.0
        labels = self._check_labels(labels, b, idx.device)
        n_prefix = 0 if labels is None else 1
        # the last sampled position is never fed back
        self._check_length(n_prefix + idx.shape[-1] + max_new_tokens - 1, "prefix + max_new_tokens - 1")
        if guided:
            labels = torch.cat((labels, torch.full_like(labels, self.num_classes)))

        was_training = self.training
        self.eval()
        try:
            out = idx
            seq = torch.cat((idx, idx)) if guided else idx  # what the model reads (doubled under guidance)
            new = seq
            cache = None
            if use_cache:
                p = next(self.parameters())
                cache = KVCache(self.n_layer, seq.shape[0], self.n_head, self.block_size, self.head_dim,
                                p.device, p.dtype)
            for step in range(max_new_tokens):
                if cache is None:
                    h = self._hidden(self._embed(seq, labels))
                else:  # the class prefix goes in with the first chunk only
                    h = self._hidden(self._embed(new, labels if cache.pos == 0 else None), cache)
                logits = self._head(h[:, -1:])[..., 0, :].float()  # (B,V) or (B,Q,V)
                if guided:
                    cond, uncond = logits.chunk(2)
                    logits = uncond + cfg_scale * (cond - uncond)
                if allowed is not None:
                    shape = logits.shape
                    logits = allowed(step, logits)
                    if not isinstance(logits, Tensor) or logits.shape != shape:
                        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                        raise ValueError(f"allowed: expected it to return logits of shape {tuple(shape)}, got {got}")
                nxt = sample_logits(logits, temperature, top_k, top_p, generator)[..., None]
                out = torch.cat((out, nxt), dim=-1)
                new = torch.cat((nxt, nxt)) if guided else nxt
                seq = torch.cat((seq, new), dim=-1)
        finally:
            self.train(was_training)
        return out

    # --- Hub I/O ----------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write model.safetensors and config.json (architecture + plain JSON config)."""
        from ..hub import save_weights

        save_weights(self, save_directory)
        record = {"architecture": type(self).__name__, "config": self.config,
                  "vtok": {"kind": "ar", "num_params": self.num_params}}
        (save_directory / "config.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        (save_directory / "README.md").unlink(missing_ok=True)  # the mixin writes a fresh card next

    def generate_model_card(self, **card: Any) -> ModelCard:
        """Model card naming the tokenizer (and its hash); card keys: name, repo_id, data, recipe, metrics, license."""
        data = ModelCardData(library_name="vtok", license=card.pop("license", "apache-2.0"), tags=list(TAGS))
        fields = {**self.config, "num_params": self.num_params,
                  "config_json": json.dumps(self.config, indent=2, sort_keys=True)}
        return ModelCard.from_template(data, template_str=CARD, **{**fields, **card})

    @classmethod
    def from_pretrained(cls, source: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, token: str | bool | None = None,
                        map_location: str | torch.device = "cpu") -> "GPT":
        """A GPT in eval mode from a local dir or Hub repo id, loaded strictly from safetensors."""
        from ..hub import resolve_files, load_state_strict

        config_path, weights = resolve_files(source, revision=revision, cache_dir=cache_dir,
                                        local_files_only=local_files_only, token=token)
        record = json.loads(Path(config_path).read_text())
        if record.get("architecture") != cls.__name__ or not isinstance(record.get("config"), dict):
            raise ValueError(f"{source}: expected a vtok {cls.__name__} config.json, "
                             f"got architecture {record.get('architecture')!r}")
        model = cls(**record["config"])
        load_state_strict(model, load_file(str(weights), device=str(map_location)), str(weights))
        return model.to(map_location).eval()


def sample_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """logits (..., V) -> ids (...): argmax at temperature 0, else a draw after top-k and top-p filtering."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token once the tokens ranked above it reach top_p (the top token always stays)
        sorted_logits = sorted_logits.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    draws = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return draws.view(probs.shape[:-1])


CARD = """---
{{ card_data }}
---

# {{ name | default("vtok GPT") }}

A compact decoder-only GPT from vtok (pre-norm, RoPE, KV cache) trained on the ids of the tokenizer
{% if tokenizer %}`{{ tokenizer }}`{% else %}(not recorded){% endif %}{% if tokenizer_hash %} (hash `{{ tokenizer_hash }}`){% endif %}.
It only makes sense with that tokenizer: decode its samples with it.

| | |
|---|---|
| tokenizer | {% if tokenizer %}`{{ tokenizer }}`{% else %}not recorded{% endif %} |
| tokenizer hash | {% if tokenizer_hash %}`{{ tokenizer_hash }}`{% else %}not recorded{% endif %} |
| vocab per stream (special ids included) | {{ vocab_size }} |
| streams | {{ num_streams }}{% if num_streams > 1 %} (delay pattern){% endif %} |
| layers x width (heads) | {{ n_layer }} x {{ n_embd }} ({{ n_head }}) |
| context (positions) | {{ block_size }} |
| classes | {% if num_classes %}{{ num_classes }} (+ null class for CFG){% else %}unconditional{% endif %} |
| parameters | {{ num_params }} |
{% if recipe %}| recipe | `{{ recipe }}` |
{% endif %}{% if data %}| training data | {{ data }} |
{% endif %}

## Use

```python
from vtok.ar import GPT
gpt = GPT.from_pretrained("{{ repo_id | default("<this repo id>") }}")
ids = gpt.generate(prefix, max_new_tokens=...)
```

## Metrics

{% if metrics -%}
| metric | value |
|---|---|
{% for k, v in metrics.items() -%}
| {{ k }} | {{ v }} |
{% endfor %}
{%- else -%}
No measured metrics yet: this card is written by `save_pretrained` and states only what the model is.
{%- endif %}

## Config

```json
{{ config_json }}
```
"""
