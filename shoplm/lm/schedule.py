"""The learning-rate schedule of every encoder fine-tuning (`train search`, `shoplm pretrain`)."""

from __future__ import annotations

from typing import Protocol


class Scheduled(Protocol):
    lr: float  # peak rate
    warmup: float  # share of the steps spent warming up


def lr_at(step: int, steps: int, cfg: Scheduled, spent: float = 0.0) -> float:
    """Linear warmup over `warmup * steps`, then linear decay to 0. `spent`: the share of
    `max_minutes` used so far; when the time limit comes before the last step, the decay
    follows the clock instead, so the rate still reaches 0 at the end (a CPU's speed varies
    with load; cut mid-schedule, a run kept a high rate to the end)."""
    warm = max(1, int(cfg.warmup * steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    by_step = (steps - step) / max(1, steps - warm)
    by_clock = (1.0 - spent) / (1.0 - cfg.warmup)
    return cfg.lr * max(0.0, min(by_step, by_clock))
