"""Neural-operator sampler distillation (DSNO, Zheng et al. 2023), per-time flow-map form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.base import Logs, Method, register
from methods.common import like_or_default, pseudo_huber_edm, times_like
from unify.edm import time_of_edm_sigma
from unify.flowmap import FlowMap


class TrajectoryPool(nn.Module):
    """Teacher trajectories ``traj`` (P, K + 1, ...): x0 at t = 0, then X'_{0,t_k}(x0) for each t_k.

    The buffer is created on the first loss call (it needs the data shape); a checkpoint restores
    it into an empty pool, so a resumed run trains on the same trajectories.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("traj", None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "traj" in state_dict:
            self.traj = state_dict[prefix + "traj"].clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register("no")
class NeuralOperator(Method):
    """L = E_{x0 in pool} sum_k w_k d(X_{0,t_k}(x0), X'_{0,t_k}(x0)) / sum_k w_k, fixed t_k,
    X' precomputed teacher ODE trajectories from ``pool_size`` noise draws (seed ``pool_seed``).

    Source: DSNO, Zheng et al. 2023 (arXiv 2211.13449), Eq. 7; devzhk/DSNO-pytorch
    ``utils/loss.py``. One output X_{0,t_k} per time stands for the operator's temporal layers.
    Defaults kept: 'quad' times t_k = {0.4375, 0.75, 0.9375, 1} (t_PD = i^2/256, i in {12, 8, 4,
    0}), mapped by ``unify.edm`` (docs/recipes.md); no target network; 1-NFE sampler X_{0,1}(x0).
    Deviations:
    - d = pseudo-Huber (iCT's c, EDM units) instead of VGG-feature LPIPS (downloaded weights);
    - weights uniform by default (``weights = "snr"``: DSNO's clamp(sqrt SNR, 1, 1e4));
    - 4096 trajectories with 16 teacher steps per interval (64 in all), not 512-step DDIM;
    - trajectories computed in-process at the first loss call (checkpointed), not read from LMDB.
    """

    @dataclass(frozen=True)
    class Config:
        times: tuple[float, ...] = (0.4375, 0.75, 0.9375, 1.0)  # DSNO 'quad', t = 1 - i^2/256
        pool_size: int = 4096
        substeps: int = 16  # teacher steps between consecutive times
        pool_seed: int = 0
        weights: str = "uniform"  # "uniform" | "snr" (DSNO's clamp(sqrt SNR, 1, 1e4))
        chunk: int = 1024  # trajectories per teacher batch when building the pool

    family = "teacher-distilled"
    needs_teacher = True
    init_from_teacher = True  # DSNO's operator is the teacher U-Net plus temporal layers
    exact_terms = ("no",)
    summary = {
        "paper": "Zheng et al. 2023 (DSNO)",
        "times": "s = 0 -> fixed t_PD = i^2/256, i in {12, 8, 4, 0} (cosine time)",
        "target": "precomputed teacher ODE trajectory at t_k, pseudo-Huber",
        "nfe": "1",
    }

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        if self.cfg.weights not in ("uniform", "snr"):
            raise ValueError(f"weights must be 'uniform' or 'snr', got {self.cfg.weights!r}")
        times = list(self.cfg.times)
        if not (0 < times[0] and all(a < b for a, b in zip(times, times[1:])) and times[-1] <= 1):
            raise ValueError(f"times must increase within (0, 1], got {times}")
        self.nets["pool"] = TrajectoryPool()

    @torch.no_grad()
    def _build_pool(self, x1: Tensor) -> Tensor:
        gen = torch.Generator(device=x1.device).manual_seed(self.cfg.pool_seed)
        shape = (self.cfg.pool_size, *x1.shape[1:])
        x0 = torch.randn(shape, generator=gen, dtype=x1.dtype, device=x1.device)
        knots = [0.0, *self.times().tolist()]
        trajs = []
        for x in x0.split(self.cfg.chunk):
            points = [x]
            for lo, hi in zip(knots[:-1], knots[1:]):
                sub = torch.linspace(lo, hi, self.cfg.substeps + 1).tolist()
                for s, t in zip(sub[:-1], sub[1:]):
                    x = self.teacher.step(x, times_like(s, x), times_like(t, x))
                points.append(x)
            trajs.append(torch.stack(points, 1))
        return torch.cat(trajs)

    def times(self) -> Tensor:
        """Our float64 times of ``cfg.times`` (cosine-VP times 1 - t_PD, sigma_EDM = cot(pi t / 2)),
        mapped by the translation rule (``unify.edm``); 1 stays the data end."""
        f = torch.tensor(self.cfg.times, dtype=torch.float64)
        out = time_of_edm_sigma(self.interpolant, 1 / torch.tan(0.5 * math.pi * f), self.sigma_data)
        return torch.where(f == 1, torch.ones_like(out), out)

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(s, t), each (n K,) in sample-major order: s = 0 and the K fixed times (no draw)."""
        like = like_or_default(like)
        t = self.times().to(like).repeat(n)
        return torch.zeros_like(t), t

    def _weights(self, like: Tensor) -> Tensor:
        f = torch.tensor(self.cfg.times, dtype=like.dtype, device=like.device)
        if self.cfg.weights == "uniform":
            return torch.ones_like(f)
        # sqrt(SNR) of the cosine-VP time 1 - f: tan(pi f / 2), 1e4 at the data end
        return torch.tan(0.5 * math.pi * f).nan_to_num(posinf=1e4).clamp(1.0, 1e4)

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        pool = self.nets["pool"]
        if pool.traj is None:
            pool.traj = self._build_pool(x1)
        idx = torch.randint(0, pool.traj.shape[0], (x1.shape[0],), device=pool.traj.device)
        traj = pool.traj[idx].to(x1)  # (B, K + 1, ...)
        b, k = traj.shape[:2]
        x0 = traj[:, 0]
        xs = x0.repeat_interleave(k - 1, 0)  # (B * K, ...) in sample-major order
        s, t = self.sample_times(b, step, like=x1)
        pred = flow_map(xs, s, t)
        dist = pseudo_huber_edm(pred, traj[:, 1:].flatten(0, 1), self.sigma_data).view(b, k - 1)
        w = self._weights(x1)
        loss = (dist * w).sum(1).mean() / w.sum()
        return loss, {"no": loss.detach()}

    def supports(self, nfe: int) -> bool:
        return nfe == 1

    @torch.no_grad()
    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """One NFE: X_{0,1}(x0) (the t = 1 output of the operator)."""
        self.check_nfe(nfe)
        return flow_map(x0, times_like(0.0, x0), times_like(1.0, x0))
