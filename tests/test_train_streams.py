"""Counter-based streams: exact against a NumPy uint32 reference, and statistically sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from evosim.train import streams


def _lowbias32_np(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    return x


def test_hash32_matches_uint32_reference():
    g = np.random.default_rng(0)
    x = np.concatenate(
        [
            g.integers(0, 2**32, size=10_000, dtype=np.uint64),
            np.array([0, 1, 2**31, 2**32 - 1], dtype=np.uint64),
        ]
    )
    got = streams.hash32(torch.from_numpy(x.astype(np.int64))).numpy()
    assert got.min() >= 0 and got.max() < 2**32
    np.testing.assert_array_equal(got.astype(np.uint32), _lowbias32_np(x))


def test_streams_are_position_free_and_step_dependent():
    keys = streams.member_keys(11, ["a", "b", "c"], [0, 0, 1])
    alone = streams.member_keys(11, ["c"], [1])
    assert torch.equal(keys[2], alone[0])
    base = streams.step_base(keys, streams.STREAM_BATCH, 5)
    assert torch.equal(
        streams.randint(base, (64,), 100)[2],
        streams.randint(streams.step_base(alone, streams.STREAM_BATCH, 5), (64,), 100)[0],
    )
    other = streams.step_base(keys, streams.STREAM_BATCH, 6)
    assert not torch.equal(base, other)
    assert not torch.equal(base, streams.step_base(keys, streams.STREAM_NOISE, 5))
    assert len(set(base.tolist())) == 3


def test_randint_is_uniform():
    # 200 members x 5 steps x 1000 draws on [0, 50): chi-square goodness of fit, reject at
    # p < 1e-4 (a false failure once in 10,000 seeds; this seed is fixed).
    keys = streams.member_keys(3, [f"s{i}" for i in range(200)], [0] * 200)
    draws = torch.cat(
        [streams.randint(streams.step_base(keys, 1, t), (1000,), 50).flatten() for t in range(5)]
    )
    assert draws.min() >= 0 and draws.max() < 50
    counts = np.bincount(draws.numpy(), minlength=50)
    assert stats.chisquare(counts).pvalue > 1e-4
    # consecutive draws are uncorrelated: |r| < 5 / sqrt(n) (5 sigma, p < 1e-6)
    d = draws.double().numpy()
    r = np.corrcoef(d[:-1], d[1:])[0, 1]
    assert abs(r) < 5 / np.sqrt(d.size)


def test_normal_is_standard_normal():
    keys = streams.member_keys(4, [f"s{i}" for i in range(100)], [0] * 100)
    z = streams.normal(streams.step_base(keys, streams.STREAM_EPS, 0), (50, 20)).double().numpy()
    assert z.shape == (100, 50, 20)
    # Kolmogorov-Smirnov against N(0, 1) on 100,000 draws, reject at p < 1e-4
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    n = z.size  # mean and variance within 5 standard errors (p < 1e-6)
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)


def test_randint_rejects_bad_range():
    base = streams.step_base(streams.member_keys(0, ["a"], [0]), 1, 0)
    with pytest.raises(ValueError, match="high"):
        streams.randint(base, (3,), 0)
