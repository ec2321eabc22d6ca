"""Shared test fixtures."""

import math
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Save a Kaiming-initialised state_dict with torch-fidelity's InceptionV3 keys and shapes.

    Builds ``FeatureExtractorInceptionV3`` on the meta device with its weight loading stubbed
    out, so the keys are exactly those ``feature_extractor_weights_path`` must provide; then
    fills convolutions/linear layers Kaiming-normal and BatchNorm with identity statistics.
    """
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    cls = fe.FeatureExtractorInceptionV3
    with (
        torch.device("meta"),
        mock.patch.object(fe, "load_state_dict_from_url", return_value={}),
        mock.patch.object(cls, "load_state_dict", return_value=None),
    ):
        net = cls("inception-v3-compat", ["2048"])
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, mod in net.named_modules():
        for name, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            key = f"{prefix}.{name}" if prefix else name
            if isinstance(mod, nn.Conv2d | nn.Linear) and name == "weight":
                std = math.sqrt(2.0 / t[0].numel())  # Kaiming normal, fan_in, ReLU gain
                state[key] = torch.randn(t.shape, generator=gen) * std
            elif name in ("weight", "running_var"):  # BatchNorm scale and variance
                state[key] = torch.ones(t.shape, dtype=t.dtype)
            else:  # biases, running means, num_batches_tracked
                state[key] = torch.zeros(t.shape, dtype=t.dtype)
    assert state.keys() == net.state_dict().keys()
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> Path:
    """Random Kaiming-initialised Inception weights: FID runs offline in tests."""
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "w.pth")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Test tensors are small: intra-op threads only add synchronisation (measured 4x slower wall
    time on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
