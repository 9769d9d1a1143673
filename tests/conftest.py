"""Test-wide settings."""

from __future__ import annotations

import os

# Multithreaded BLAS on a busy 2-core machine makes small products up to 20x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")

# Under pytest-xdist each worker gets one core: oversubscribed BLAS threads only slow both down.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny models only pay for intra-op synchronisation."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
