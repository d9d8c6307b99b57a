"""Shared fixtures of the test suite."""
import logging

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests: on a busy 2-core machine two OpenMP threads per process are ~10x
    slower, not faster. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.fixture
def config_diff():
    """``diff(a, b) -> (flat_a, flat_b, keys)``: two MMEngine configs flattened to ``{"model.loss.mode": ...}`` and
    the keys whose values differ (a key one of them lacks counts as differing)."""
    def diff(a, b):
        fa, fb = _flat(a.to_dict()), _flat(b.to_dict())
        return fa, fb, {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}
    return diff


@pytest.fixture
def ultralytics_log():
    """The messages Ultralytics' ``LOGGER`` emits during the test, as a list of strings (after the logger's own
    filters, e.g. the adapter's relabelling of the per-layer table)."""
    from ultralytics.utils import LOGGER

    lines = []

    class _Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = _Collect()
    LOGGER.addHandler(handler)
    yield lines
    LOGGER.removeHandler(handler)


@pytest.fixture
def randomise_shapes():
    """A function that sets every GaussianShapedConv2d's σ/θ and every BatchNorm's statistics and affine terms of a
    model to fixed random values (seed 1), so a fuse test compares more than the initial state."""
    from gaussconv_plugin.conv import GaussianShapedConv2d

    def randomise(model) -> None:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, GaussianShapedConv2d):
                    m.sigma_raw.copy_(torch.randn(m.sigma_raw.shape, generator=g) * 0.5)
                    m.theta.copy_(torch.rand(m.theta.shape, generator=g) * 3.14)
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)

    return randomise


@pytest.fixture
def tiny_yolo_data(tmp_path):
    """``data.yaml`` of a YOLO dataset folder with no images (tests whose trainer only reads the data.yaml)."""
    d = tmp_path / "tiny"
    for s in ("train", "val"):
        (d / "images" / s).mkdir(parents=True, exist_ok=True)
        (d / "labels" / s).mkdir(parents=True, exist_ok=True)
    (d / "data.yaml").write_text(f"path: {d}\ntrain: {d}/images/train\nval: {d}/images/val\nnames:\n  0: Target\n")
    return d / "data.yaml"
