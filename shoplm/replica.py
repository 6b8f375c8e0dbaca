"""Data-parallel training as one argument of the training loops: a `Replica` says which
rows of each batch this process trains on and how it combines results with the others.

`Replica()` is the only process, i.e. in-process training (`shoplm train ...`): nothing is
split or exchanged, and the loops run exactly as they do without it.
`shoplm.jobs.train.RayReplica` is one worker of a Ray Train group (`shoplm jobs train ...`):
every worker runs the same loop with the same seed on the same data, so it draws the same
batches; each trains on rows rank::world of every batch, DDP averages the gradients, and
`all_sum` / `all_gather` combine what must be global (validation metrics, the decision to
stop, in-batch negatives). The global batch and the number of steps stay those of
in-process training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Replica:
    """The only process of a group of one; subclasses override every method for a real group."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """The replica that saves the model (rank 0)."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module whose `forward` the training step calls: DDP in a group, so that the
        backward pass averages gradients; here the model itself."""
        return model

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This replica's share of a batch's rows: rows[rank::world]."""
        return rows

    def all_sum(self, values: list[float]) -> np.ndarray:
        """float64 (k,): the element-wise sum of `values` over the replicas, the same on each."""
        return np.asarray(values, dtype=np.float64)

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """(n_r, ...) on replica r -> (n_0 + n_1 + ..., ...) in rank order, the same on each;
        gradients flow back to the rows each replica contributed."""
        return x

    def any(self, flag: bool) -> bool:
        """True on every replica when `flag` is true on one (a deadline seen by one stops all)."""
        return bool(self.all_sum([float(flag)])[0] > 0)

    def shared_generator(self, seed: int, device: str) -> torch.Generator | None:
        """A torch RNG that draws the same numbers on every replica, for draws that belong to
        the whole batch (e.g. which item IDs are hidden at a step); None = the global RNG."""
        return None


IN_PROCESS = Replica()
