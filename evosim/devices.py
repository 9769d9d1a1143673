"""Resolving a scenario's ``device`` setting (``auto``, ``cpu`` or ``cuda``)."""

from __future__ import annotations

import torch

from evosim.errors import ScenarioError

__all__ = ["resolve_device"]


def resolve_device(name: str, field: str) -> torch.device:
    """The torch device for setting ``name``; ``auto`` picks CUDA when present.

    ``field`` names the setting in the error raised when ``cuda`` is asked for but absent.

    Raises
    ------
    ScenarioError
        ``cuda`` is asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ScenarioError(
            f"{field} is 'cuda' but CUDA is not available on this machine",
            hint="use auto or cpu (`evosim info` lists the devices)",
        )
    return torch.device(name)
