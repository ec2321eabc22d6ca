"""Endless, deterministic, resumable minibatches of a dataset tensor."""

from __future__ import annotations

import torch
from torch import Tensor


class BatchSampler:
    """Endless random minibatches of ``data`` (first dim), deterministic and resumable.

    The samples form one stream of per-epoch permutations; a batch takes the next ``batch``
    indices, crossing into the next epoch when needed, so no sample is dropped or repeated
    within an epoch. Epoch ``e``'s permutation (and, with ``hflip``, its flip coin per sample,
    applied on the last dim of image batches) is drawn from a generator seeded by
    ``(seed, e)``, so ``state_dict() == {"epoch", "pos"}`` is all a resumed run needs.
    """

    def __init__(self, data: Tensor, batch: int, seed: int = 0, hflip: bool = False) -> None:
        if batch < 1 or len(data) < 1:
            raise ValueError(f"need batch >= 1 and non-empty data, got {batch}, {len(data)}")
        self.data, self.batch, self.seed, self.hflip = data, batch, seed, hflip
        self.epoch, self.pos = 0, 0
        self._perm, self._flip = self._draw(0)

    def _draw(self, epoch: int) -> tuple[Tensor, Tensor]:
        """Permutation ``(N,)`` and flip mask ``(N,)`` of an epoch, from ``(seed, epoch)``."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        perm = torch.randperm(len(self.data), generator=g)
        flip = torch.rand(len(self.data), generator=g) < 0.5
        return perm, flip

    def next(self) -> Tensor:
        """The next minibatch, ``(batch, *data.shape[1:])``."""
        idx, flip = [], []
        need = self.batch
        while need:
            take = min(need, len(self.data) - self.pos)
            idx.append(self._perm[self.pos : self.pos + take])
            flip.append(self._flip[self.pos : self.pos + take])
            self.pos += take
            need -= take
            if self.pos == len(self.data):
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm, self._flip = self._draw(self.epoch)
        index = torch.cat(idx)
        out = self.data[index.to(self.data.device)]
        if self.hflip:
            mask = torch.cat(flip).to(out.device).view(-1, *([1] * (out.ndim - 1)))
            out = torch.where(mask, out.flip(-1), out)
        return out

    __next__ = next

    def __iter__(self) -> BatchSampler:
        return self

    def state_dict(self) -> dict[str, int]:
        """Position in the stream: ``{"epoch", "pos", "seed"}``."""
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at a saved position (the seed must match the one saved)."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler seed {self.seed} != saved seed {state['seed']}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm, self._flip = self._draw(self.epoch)
