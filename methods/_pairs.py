"""Time-pair laws shared by the Flow Map Matching losses (Boffi, Albergo, Vanden-Eijnden 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from methods.common import like_or_default, uniform


def unit_square(
    n: int, like: Tensor, order: str, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(s, t) ~ U[0, 1]^2. ``order="both"`` keeps both orders (the paper's code); ``"forward"``
    sorts each pair so that s <= t, the only direction a sampler uses."""
    s, t = uniform(n, like, generator=generator), uniform(n, like, generator=generator)
    if order == "forward":
        s, t = torch.minimum(s, t), torch.maximum(s, t)
    elif order != "both":
        raise ValueError(f"order must be 'both' or 'forward', got {order!r}")
    return s, t


class UnitSquarePairs:
    """``sample_times`` of the FMM losses: (s, t) = ``unit_square`` in ``cfg.order`` (else both)."""

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        order = getattr(self.cfg, "order", "both")  # type: ignore[attr-defined]
        return unit_square(n, like_or_default(like), order, generator)
