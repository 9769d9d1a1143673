"""Resource planning: process settings restored, OpenMP wait policy, memory estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from evosim.scenario import AutoencoderConfig
from evosim.train import estimate_training_bytes, resources

ROOT = Path(__file__).resolve().parents[1]


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


def test_training_settings_restore_what_they_change(monkeypatch):
    import torch._dynamo.config as dynamo_config

    libc = _FakeLibc()
    monkeypatch.setattr(resources, "_glibc", lambda: libc)
    monkeypatch.setattr(resources, "_top_pad_now", None)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("MALLOC_TOP_PAD_", raising=False)
    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    threads = torch.get_num_threads()
    # (not monkeypatch: undoing it deletes a dynamo config entry instead of restoring it)
    with dynamo_config.patch(**{name: 8}):
        with resources.training_settings(torch.device("cpu"), compile=True):
            assert getattr(dynamo_config, name) == resources.RECOMPILE_LIMIT
            assert libc.calls == [(-2, resources.MALLOC_TOP_PAD)]
            with resources.malloc_top_pad(1 << 20):  # nested: back to the outer pad after
                pass
        assert getattr(dynamo_config, name) == 8
    assert torch.get_num_threads() == threads
    # M_TOP_PAD cannot be read back from glibc: it returns to glibc's default of 128 KiB
    assert libc.calls == [
        (-2, resources.MALLOC_TOP_PAD),
        (-2, 1 << 20),
        (-2, resources.MALLOC_TOP_PAD),
        (-2, 128 << 10),
    ]
    libc.calls.clear()
    monkeypatch.setattr(resources, "_top_pad_now", None)  # as in a fresh process
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.top_pad=4096:glibc.malloc.arena_max=2")
    with resources.malloc_top_pad():
        pass
    assert libc.calls[-1] == (-2, 4096)  # or what the environment set when the process began


def test_tf32_setting_is_restored():
    old = torch.backends.cuda.matmul.allow_tf32
    with resources.cuda_tf32(not old):
        assert torch.backends.cuda.matmul.allow_tf32 is (not old)
    assert torch.backends.cuda.matmul.allow_tf32 is old


def test_openmp_wait_policy_reads_the_environment(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "Passive")
    assert resources.openmp_wait_policy() == "passive"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert resources.openmp_wait_policy() == "default"
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    assert resources.openmp_wait_policy() == "spin 1000"


def _python(code: str, **env: str | None) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update({k: v for k, v in env.items() if v is not None})
    full["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=full
    )
    return out.stdout.strip()


def test_import_evosim_makes_openmp_wait_passive_unless_told_otherwise():
    show = "import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _python("import evosim; " + show) == "PASSIVE"
    assert _python("import evosim; " + show, OMP_WAIT_POLICY="active") == "active"
    assert _python("import evosim; " + show, GOMP_SPINCOUNT="100") == "None"
    # too late once torch has started its OpenMP runtime: left alone, and the trainer says so
    assert _python("import torch, evosim; " + show) == "None"


def test_estimate_counts_the_data_and_the_chunks():
    config = AutoencoderConfig(hidden=[64], latent=2)
    small = estimate_training_bytes(config, 8, 512, 32)
    assert small > 4 * 8 * 512 * 32
    # past the CPU chunk cap, more species add their data, tables and results, not chunks
    cap = resources.cpu_chunk_cap(resources.AESpec(32, (64,), 2), 128)
    a = estimate_training_bytes(config, 2 * cap, 512, 32)
    b = estimate_training_bytes(config, 4 * cap, 512, 32)
    c = estimate_training_bytes(config, 6 * cap, 512, 32)
    assert b - a == c - b > 2 * cap * 4 * 512 * 32
    # every architecture of a mixed world is considered
    mixed = AutoencoderConfig(
        hidden=[64], latent=2, architectures=[{"hidden": [8]}, {"hidden": [512, 512]}]
    )
    big = AutoencoderConfig(hidden=[512, 512], latent=2)
    assert estimate_training_bytes(mixed, 300, 512, 32) == estimate_training_bytes(
        big, 300, 512, 32
    )


_MEASURE = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, torch
    from evosim.scenario import AutoencoderConfig
    from evosim.train import estimate_training_bytes, train_autoencoders
    torch.set_num_threads(1)
    s, n, d = {s}, {n}, {d}
    config = AutoencoderConfig(**json.loads({config!r}))
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    # torch's own first-use allocations are the interpreter's, not training's
    warm = np.arange(16 * d, dtype=np.float32).reshape(2, 8, d)
    train_autoencoders(warm, config.model_copy(update={{"steps": 2}}), seed=0, progress=False)
    base = rss()
    x = np.empty((s, n, d), np.float32)
    g = np.random.default_rng(0)
    for i in range(s):
        x[i] = g.standard_normal((n, d), dtype=np.float32)
    train_autoencoders(x, config, seed=1, progress=False)
    # this process image's peak (VmHWM): Linux's ru_maxrss also keeps the peak of the
    # process that forked this one (a pytest worker of several hundred MB), from before exec
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    peak = int(status["VmHWM"].split()[0]) * 1024
    print(json.dumps([peak - base, estimate_training_bytes(config, s, n, d)]))
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_estimate_bounds_the_measured_peak_memory():
    config = {"hidden": [64], "latent": 2, "steps": 8, "device": "cpu", "compile": False}
    code = _MEASURE.format(s=600, n=256, d=32, config=json.dumps(config))
    measured, estimate = json.loads(_python(code))
    # a bound, not a guess: the measured peak above the interpreter's stays below it
    assert 0 < measured <= estimate, (measured / 2**20, estimate / 2**20)
