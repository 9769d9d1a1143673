"""A world whose species have AEs of three architectures, end to end through ``evosim run``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

SCENARIO = """
name: mixed
seed: 3
tree: {model: yule, n_species: 12}
traits: {model: brownian, dim: 4}
species: {family: development, instances: 96, ambient_dim: 8, development_hidden: 16}
autoencoder:
  steps: 300
  batch_size: 32
  device: cpu
  architectures:
    - {hidden: [16], latent: 2}
    - {hidden: [12, 12], latent: 2, activation: tanh}
    - {hidden: [24], latent: 3}
  assign: random
meta: {steps: 100, probes: 32, latent: 4, device: cpu}
analysis: {mantel_permutations: 0, random_trees: 5, generative_folds: 2}
"""


@pytest.mark.slow
def test_three_architectures_run_end_to_end(tmp_path):
    from evosim.cli import main
    from evosim.meta import MetaResult
    from evosim.train import load_bank

    path = tmp_path / "mixed.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    bank = load_bank(out / "aes.pt")
    assert bank.is_mixed and len(bank.groups) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("raw_weights", "weight_stats"):
        assert "not_applicable" in metrics["baselines"][name]
    assert 0 <= metrics["mae"]["nrf"] <= 1
    assert "pca_of_aligned_weights" in metrics["generative"]["fidelity"]["heldout"]
    meta = MetaResult.load(out / "mae.pt")
    sizes = [len(g.species) for g in bank.groups]
    assert meta.spec == bank.groups[sizes.index(max(sizes))].spec
    assert "not applicable" in (out / "report.md").read_text()
