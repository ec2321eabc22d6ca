"""What consistency distillation and training share: the target network and the sampler."""

from __future__ import annotations

import torch
from torch import Tensor

import unify
from methods.base import Method, ema_update, frozen_copy
from methods.common import consistency_grid
from unify.flowmap import FlowMap


class ConsistencyMethod(Method):
    """A consistency model X_{t,1}: target theta^- (EMA with decay ``self.mu``, from
    ``target_decay``; mu = 0 means sg theta) and the multistep sampler of Song et al. 2023, Alg. 1
    (map to the data end, re-noise)."""

    def target_decay(self) -> float:
        """The target EMA decay of this run (``cfg.mu``; subclasses resolve ``None``)."""
        return float(self.cfg.mu)

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        self.mu = self.target_decay()
        if self.mu > 0:
            self.nets["target"] = frozen_copy(flow_map)

    def target_net(self, flow_map: FlowMap) -> FlowMap:
        return self.nets["target"] if self.mu > 0 else flow_map

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        if self.mu > 0:
            ema_update(self.nets["target"], flow_map, self.mu)

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Consistency multistep sampling (CM Alg. 1): nfe maps to the data end, nfe NFE."""
        self.check_nfe(nfe)
        grid = consistency_grid(nfe, self.interpolant, self.cfg.mid_sigma, self.sigma_data)
        return unify.consistency_sample(flow_map, x0, nfe, self.interpolant, grid, generator)
