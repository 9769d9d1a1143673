"""The archetypal MAE (Deep AA, ``meta.prior: archetypal``) on worlds with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evosim.analysis.archetypes import archetype_recovery
from evosim.meta import fit_meta_autoencoder
from evosim.phylo import Phylogeny
from evosim.scenario import AutoencoderConfig, MetaConfig, parse_scenario
from evosim.train import train_autoencoders


def test_the_archetypal_mae_recovers_three_archetypes_of_exact_mixtures():
    # Species' traits are exact convex mixtures of 3 archetypes (the pure ones included);
    # each species' instances are a fixed linear image of its traits plus noise. The MAE
    # sees only the AEs trained on those instances.
    rng = np.random.default_rng(1)
    k, s, n, d = 3, 24, 256, 8
    archetypes = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.4]])
    weights = np.vstack([np.eye(k), rng.dirichlet(np.ones(k), size=s - k)])
    traits = weights @ archetypes
    lift = rng.normal(size=(2, d)) / np.sqrt(2)
    x = (traits @ lift)[:, None, :] + 0.3 * rng.standard_normal((s, n, d))
    bank = train_autoencoders(
        x.astype(np.float32),
        AutoencoderConfig(hidden=[16], latent=2, steps=800, device="cpu"),
        seed=1,
        progress=False,
    )
    meta = fit_meta_autoencoder(
        bank,
        MetaConfig(prior="archetypal", archetypes=3, steps=600, device="cpu"),
        seed=1,
        progress=False,
    )
    scores = archetype_recovery(meta.archetype_weights, traits, archetypes)
    # Tolerance: a recovered archetype is the true one when it lies nearer to it than to any
    # other true archetype, i.e. within half their smallest separation (the Voronoi cell),
    # with a one-to-one matching. Errors are in units of the species' trait spread.
    gaps = [np.linalg.norm(archetypes[i] - archetypes[j]) for i in range(k) for j in range(i)]
    half_gap = min(gaps) / 2 / scores["spread"]
    assert sorted(scores["matching"]) == [0, 1, 2]
    assert scores["archetype_error_max"] < half_gap, (scores["archetype_errors"], half_gap)


class _Stop(Exception):
    """Ends the run at the MAE stage, once its inputs are recorded."""


def _arrays(obj: object, seen: set[int] | None = None, depth: int = 0) -> list[np.ndarray]:
    """Every array or tensor reachable from ``obj`` (attributes, mappings, sequences)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj.detach().cpu().double().numpy()]
    if isinstance(obj, np.ndarray):
        return [obj] if obj.dtype.kind in "fiu" else []
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, list | tuple):
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return []
    return [a for item in items for a in _arrays(item, seen, depth + 1)]


def test_the_mae_never_sees_the_optima_or_the_tree(monkeypatch, tmp_path: Path):
    import evosim.meta
    from evosim.pipeline import run

    sc = parse_scenario(
        "seed: 5\ntree: {model: yule, n_species: 10}\n"
        "traits: {model: tradeoff, dim: 4, tasks: 3}\n"
        "species: {instances: 32, ambient_dim: 8}\n"
        "autoencoder: {steps: 20, hidden: [8], device: cpu}\n"
        "meta: {prior: archetypal, archetypes: 3, steps: 5, device: cpu}\n"
    )
    seen: dict = {}

    def spy(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        raise _Stop

    monkeypatch.setattr(evosim.meta, "fit_meta_autoencoder", spy)
    with pytest.raises(_Stop):
        run(sc, tmp_path / "run", progress=False)
    inputs = [*seen["args"], *seen["kwargs"].values()]
    assert seen["kwargs"]["side_information"] is None
    assert not any(isinstance(x, Phylogeny) for x in inputs)
    optima = np.loadtxt(
        tmp_path / "run" / "task_optima.csv", delimiter=",", skiprows=1, usecols=range(1, 5)
    )
    arrays = _arrays(inputs)
    assert arrays  # the AEs' weights are among the inputs: the walk reaches into the bank
    for a in arrays:
        flat = a.ravel()
        for value in optima.ravel():
            assert not np.any(np.isclose(flat, value, rtol=0, atol=1e-9)), value
