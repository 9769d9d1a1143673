"""Test-wide settings."""

from __future__ import annotations

import os

import matplotlib
import torch

matplotlib.use("Agg")

# Under pytest-xdist each worker gets one core: oversubscribed BLAS threads only slow both down.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
