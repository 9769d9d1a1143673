"""The provenance record."""

from __future__ import annotations

import importlib.metadata
import json

import evosim
from evosim.provenance import SCHEMA_VERSION, make_provenance, stable_provenance
from evosim.scenario import parse_scenario


def test_one_record_with_versions_scenario_command_devices_and_times():
    sc = parse_scenario("seed: 4\ntree: {n_species: 5}\n")
    record = make_provenance(
        command="run",
        scenario=sc.to_dict(),
        options={"out": "runs/x"},
        argv=["evosim", "run", "s.yaml"],
        devices={"autoencoder": "cpu"},
        start="2026-01-01T00:00:00+00:00",
        end="2026-01-01T00:01:00+00:00",
    )
    json.dumps(record)  # plain data
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["software"]["version"] == importlib.metadata.version("evosim")
    assert evosim.__version__ == record["software"]["version"]
    assert record["parameters"]["scenario"]["seed"] == 4
    assert record["parameters"]["argv"] == ["evosim", "run", "s.yaml"]
    env = record["environment"]
    assert set(env) >= {"os", "python", "libraries", "cuda", "devices"}
    assert env["libraries"]["torch"]["version"] == importlib.metadata.version("torch")
    assert env["devices"] == {"autoencoder": "cpu"}
    assert record["times"] == {
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-01-01T00:01:00+00:00",
    }


def test_the_stable_part_leaves_out_what_differs_between_identical_runs():
    a = make_provenance(command="run", options={"out": "a"}, argv=["x"], start="1", end="2")
    b = make_provenance(command="run", options={"out": "b"}, argv=["y"], start="3", end="4")
    assert a != b
    assert stable_provenance(a) == stable_provenance(b)
    assert "times" not in stable_provenance(a)
