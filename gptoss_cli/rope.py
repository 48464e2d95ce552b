"""YaRN rotary-embedding tables for gpt-oss (docs/design.md §2.3).

The band limits are not rounded (the reference and transformers do not round;
llama.cpp does). Tables are computed in float64 and stored as float32.
"""

from __future__ import annotations

import math

import numpy as np

from .config import ModelConfig


def yarn_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Per-pair inverse frequencies (float64, head_dim/2 values) with YaRN blending."""
    half = cfg.head_dim // 2
    i = np.arange(half, dtype=np.float64)
    freq = cfg.rope_base ** (-2.0 * i / cfg.head_dim)
    factor = cfg.rope_scaling_factor
    if factor <= 1.0:
        return freq

    def band(beta: float) -> float:
        return (
            cfg.head_dim
            * math.log(cfg.rope_original_context / (beta * 2 * math.pi))
            / (2 * math.log(cfg.rope_base))
        )

    low, high = band(cfg.yarn_beta_fast), band(cfg.yarn_beta_slow)
    low, high = max(low, 0.0), min(high, half - 1.0)
    if high == low:
        high += 0.001
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
    return freq / factor * ramp + freq * (1.0 - ramp)


class RopeTables:
    """cos/sin for positions [start, start+n), multiplied by the YaRN attention factor."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.inv_freq = yarn_inv_freq(cfg)
        self.mscale = cfg.rope_mscale

    def __call__(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(start, start + n, dtype=np.float64)
        angle = pos[:, None] * self.inv_freq[None, :]
        cos = (np.cos(angle) * self.mscale).astype(np.float32)
        sin = (np.sin(angle) * self.mscale).astype(np.float32)
        return cos, sin
