"""ModelConfig: the one description of a gpt-oss model's shape and constants.

Built from GGUF metadata (the runtime), and written back by the GGUF writer
(convert, tests), so both sides agree on what each `gpt-oss.*` key means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ARCH = "gpt-oss"

# gpt-oss is trained for 131072 positions (4096 x YaRN factor 32); eight times that
# leaves room for longer-context fine-tunes, while a corrupt 2**32-1 is refused before
# a KV cache is sized from it (the 120b's takes 72 KiB a position: 300 TB for 2**32).
MAX_CONTEXT_LENGTH = 1 << 20

# GGUF metadata keys (without the "gpt-oss." prefix) that every file must carry.
REQUIRED_KEYS: tuple[str, ...] = (
    "block_count",
    "context_length",
    "embedding_length",
    "expert_feed_forward_length",
    "expert_count",
    "expert_used_count",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.layer_norm_rms_epsilon",
    "attention.sliding_window",
    "rope.freq_base",
)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and constants of a gpt-oss model (docs/design.md §2.1)."""

    n_layers: int
    n_experts: int
    n_experts_used: int
    hidden: int
    expert_ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int = 131072
    sliding_window: int = 128
    rms_eps: float = 1e-5
    rope_base: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_original_context: int = 4096
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702
    # Layer i uses the sliding window when i % swa_period == 0 (even layers).
    swa_period: int = field(default=2)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def is_sliding(self, layer: int) -> bool:
        return layer % self.swa_period == 0

    @property
    def rope_mscale(self) -> float:
        """YaRN attention factor applied to both cos and sin."""
        if self.rope_scaling_factor <= 1.0:
            return 1.0
        return 0.1 * math.log(self.rope_scaling_factor) + 1.0

    def validate(self) -> None:
        """Raise ValueError when the numbers cannot describe a gpt-oss model."""
        positive = {
            "block_count": self.n_layers,
            "expert_count": self.n_experts,
            "expert_used_count": self.n_experts_used,
            "embedding_length": self.hidden,
            "expert_feed_forward_length": self.expert_ffn,
            "attention.head_count": self.n_heads,
            "attention.head_count_kv": self.n_kv_heads,
            "attention.key_length": self.head_dim,
            "vocab size": self.vocab_size,
            "context_length": self.context_length,
            "attention.sliding_window": self.sliding_window,
            "rope.scaling.original_context_length": self.rope_original_context,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.context_length > MAX_CONTEXT_LENGTH:
            raise ValueError(
                f"context_length {self.context_length} is larger than gptoss supports ({MAX_CONTEXT_LENGTH}; "
                "gpt-oss models have 131072)"
            )
        self._validate_floats()
        if self.n_experts_used > self.n_experts:
            raise ValueError(
                f"expert_used_count ({self.n_experts_used}) exceeds expert_count ({self.n_experts})"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"head_count ({self.n_heads}) is not a multiple of head_count_kv ({self.n_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"key_length must be even for rotary embedding, got {self.head_dim}")

    def _validate_floats(self) -> None:
        """NaN, infinity, zero or negative constants would only show up later as a
        division by zero in the rope tables or NaN logits; refuse them by key."""
        positive = {
            "attention.layer_norm_rms_epsilon": self.rms_eps,
            "rope.scaling.factor": self.rope_scaling_factor,
            "rope.scaling.yarn_beta_fast": self.yarn_beta_fast,
            "rope.scaling.yarn_beta_slow": self.yarn_beta_slow,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        # the YaRN band divides by log(freq_base): a base of 1 or less has no frequencies to blend
        if not (math.isfinite(self.rope_base) and self.rope_base > 1):
            raise ValueError(f"rope.freq_base must be a finite number above 1, got {self.rope_base}")
