"""Time-pair laws shared by the Flow Map Matching losses (Boffi, Albergo, Vanden-Eijnden 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from methods.common import uniform


def unit_square(n: int, like: Tensor, order: str) -> tuple[Tensor, Tensor]:
    """(s, t) ~ U[0, 1]^2. ``order="both"`` keeps both orders (the paper's code); ``"forward"``
    sorts each pair so that s <= t, the only direction a sampler uses."""
    s, t = uniform(n, like), uniform(n, like)
    if order == "forward":
        s, t = torch.minimum(s, t), torch.maximum(s, t)
    elif order != "both":
        raise ValueError(f"order must be 'both' or 'forward', got {order!r}")
    return s, t
