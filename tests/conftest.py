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
