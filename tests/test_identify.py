"""The bank as a species identifier: errors, calibration, novelty, batching, mixed banks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evosim.analysis.identification import auroc, expected_calibration_error
from evosim.scenario import AutoencoderConfig
from evosim.train import AEBank, AEBankSet, train_autoencoders
from evosim.train.identify import _nll, calibrate, fit_temperature, identify, isotonic_fit


def _cfg(**kw) -> AutoencoderConfig:
    base = dict(hidden=[16], latent=1, steps=400, batch_size=64, device="cpu", compile=False)
    base.update(kw)
    return AutoencoderConfig(**base)


def _arcs(n_classes: int, n: int, *, seed: int, spread: float = 10.0, d: int = 6) -> np.ndarray:
    """``[C, n, D]``: class c is a half circle of radius 1 around a centre; centres are far apart.

    Centres are N(0, spread^2 I) in R^6, so two classes are typically ~spread*sqrt(2*6) = 35
    apart and at least several units: far beyond the arcs' size (1) and noise (0.05).
    """
    gen = np.random.default_rng(seed)
    centres = gen.normal(0.0, spread, (n_classes, d))
    out = []
    for c in range(n_classes):
        q, _ = np.linalg.qr(gen.standard_normal((d, 2)))
        theta = gen.uniform(0.0, math.pi, n)
        pts = np.stack([np.cos(theta), np.sin(theta)], 1) @ q.T
        out.append(centres[c] + pts + 0.05 * gen.standard_normal((n, d)))
    return np.stack(out).astype(np.float32)


def _split(x: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return x[:, :a], x[:, a:b], x[:, b:]


@pytest.fixture(scope="module")
def separated():
    # 6 classes: the bank is trained on the first 5; the 6th is never seen
    x = _arcs(6, 600, seed=0)
    train, cal, test = _split(x, 300, 400)
    bank = train_autoencoders(train[:5], _cfg(), seed=3, progress=False)
    return bank, cal, test


def test_identification_of_well_separated_classes_is_near_perfect(separated):
    # Classes lie > 5 units apart and each AE's decoder can only output points near its own
    # 1-D arc, so another class's instance is reconstructed with an error of order the
    # squared distance (>> 1) against ~0.01 for its own: the Bayes error is ~0. We allow 1%
    # (10 of 1,000 test instances) for imperfect training; measured: 0 errors.
    bank, cal, test = separated
    bank.calibrate_identification(cal[:5])
    res = bank.identify(test[:5].reshape(-1, 6))
    labels = np.repeat(np.arange(5), test.shape[1])
    assert np.mean(res.index == labels) >= 0.99
    assert res.predicted[:3] == [bank.species[0]] * 3
    assert np.all((res.score > 0) & (res.score <= 1))


def test_novelty_of_an_unseen_well_separated_class_is_near_one(separated):
    # The unseen class's instances are far from every known arc, so their best error is
    # orders of magnitude above any known class's own held-out errors: every unseen
    # instance should outscore (almost) every known one. Threshold 0.99: AUROC is the
    # fraction of (unseen, known) pairs ranked right, and a few known outliers (e.g. at an
    # arc's end, where an AE is least accurate) may cost a fraction of a percent.
    bank, cal, test = separated
    cal_fit = calibrate(bank, cal[:5])
    known = identify(bank, test[:5].reshape(-1, 6), cal_fit)
    novel = identify(bank, test[5], cal_fit)
    assert auroc(known.novelty, novel.novelty) >= 0.99
    # the known classes' own novelty scores are robust z-scores of their own error
    # distribution: median ~ 0, spread ~ 1 (100 held-out instances fix the median to about
    # +-0.13 sd; 0.5 is a loose bound)
    assert abs(np.median(known.novelty)) < 0.5


def test_calibrated_score_is_calibrated():
    # Overlapping classes (centres ~1.5 noise sd apart) make identification uncertain
    # (accuracy ~0.6). Under perfect calibration the expected ECE of B = 15 bins over
    # n = 8,000 test instances is at most sqrt(2/pi) * 0.5 * sqrt(B / n) = 0.017; the score
    # map, fitted on 4,000 other instances, adds an estimation error of the same order, so
    # we require ECE <= 0.035. (Measured over data seeds 0-4: 0.018-0.026; the temperature
    # softmax alone: 0.03-0.09.)
    gen = np.random.default_rng(3)
    c, d = 4, 4
    centres = gen.normal(0.0, 0.75, (c, d))
    x = (centres[:, None, :] + 0.5 * gen.standard_normal((c, 4000, d))).astype(np.float32)
    x[..., 2:] *= 0.2  # a low-variance subspace the 2-D codes can ignore
    train, cal, test = _split(x, 1000, 2000)
    bank = train_autoencoders(train, _cfg(latent=2, steps=300), seed=0, progress=False)
    cal_fit = calibrate(bank, cal)
    labels = np.repeat(np.arange(c), test.shape[1])
    res = identify(bank, test.reshape(-1, d), cal_fit, return_probabilities=True)
    correct = res.index == labels
    assert 0.4 < correct.mean() < 0.95  # a calibration test needs errors to calibrate
    assert expected_calibration_error(res.score, correct) <= 0.035
    np.testing.assert_allclose(res.probabilities.sum(1), 1.0, rtol=1e-5)
    # the score is a monotone map of the softmax's top probability
    grid = np.linspace(0.0, 1.0, 1001)
    assert np.all(np.diff(cal_fit.score(grid)) >= 0)
    np.testing.assert_allclose(cal_fit.score(res.probabilities.max(1)), res.score, atol=1e-5)


def test_isotonic_fit_matches_scikit_learn():
    pytest.importorskip("sklearn")
    from sklearn.isotonic import IsotonicRegression

    gen = np.random.default_rng(9)
    x = gen.random(500)
    y = (gen.random(500) < x**2).astype(float)
    knots, values = isotonic_fit(x, y)
    assert np.all(np.diff(knots) > 0) and np.all(np.diff(values) >= 0)
    want = IsotonicRegression(out_of_bounds="clip").fit_transform(x, y)
    # the same pooled blocks: the step heights are scikit-learn's fitted values
    np.testing.assert_allclose(values, np.unique(want), rtol=1e-12)
    # and each knot is its block's mean x
    for k, v in zip(knots, values):
        assert k == pytest.approx(x[np.isclose(want, v)].mean(), rel=1e-12)


def test_fit_temperature_recovers_the_true_temperature():
    # Labels drawn from softmax(-L / tau0): the MLE of log tau is within 5 standard errors,
    # the standard error from the observed information (numerical second derivative of n
    # times the mean NLL in log tau).
    gen = np.random.default_rng(2)
    n, s, tau0 = 20_000, 8, 0.4
    log_err = gen.normal(0.0, 1.0, (n, s))
    logits = -log_err / tau0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > gen.random((n, 1))).argmax(1)
    tau, nll = fit_temperature(log_err, labels)
    h = 1e-3
    lt = math.log(tau)
    curv = (
        _nll(log_err, labels, math.exp(lt + h))
        - 2 * _nll(log_err, labels, math.exp(lt))
        + _nll(log_err, labels, math.exp(lt - h))
    ) / h**2
    se = 1.0 / math.sqrt(n * curv)
    assert abs(lt - math.log(tau0)) < 5 * se
    assert nll == pytest.approx(_nll(log_err, labels, tau), rel=1e-9)


def test_errors_are_batched_exactly_and_chunking_does_not_matter():
    gen = np.random.default_rng(4)
    x = gen.standard_normal((3, 50, 5)).astype(np.float32)
    bank = train_autoencoders(x, _cfg(latent=2, steps=20, replicates=2), seed=0, progress=False)
    probe = gen.standard_normal((37, 5)).astype(np.float32)
    err = bank.reconstruction_errors(probe)
    direct = ((bank.reconstruct_all(probe) - probe[None]) ** 2).mean(-1)  # [M, P]
    want = direct.reshape(3, 2, -1).mean(1).T  # replicates averaged
    np.testing.assert_allclose(err, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bank.reconstruction_errors(probe, chunk_size=4), err, rtol=1e-5)
    cal = bank.calibrate_identification(x[:, :10])
    a = bank.identify(probe, return_errors=True)
    b = bank.identify(probe, calibration=cal, chunk_size=5)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_allclose(a.score, b.score, atol=1e-3)  # float noise via the score map
    np.testing.assert_allclose(a.novelty, b.novelty, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.index, err.argmin(1))
    np.testing.assert_allclose(a.best_error, err.min(1), rtol=1e-5)
    with pytest.raises(ValueError, match="calibrat"):
        AEBank.from_params(bank.spec, bank.params, bank.species, 2).identify(probe)


def test_mixed_architecture_set_identifies_like_its_groups():
    gen = np.random.default_rng(5)
    x = _arcs(4, 200, seed=5)
    names = ["a", "b", "c", "d"]
    g1 = train_autoencoders(x[[0, 2]], _cfg(steps=100), species=["a", "c"], seed=1, progress=False)
    g2 = train_autoencoders(
        x[[1, 3]],
        _cfg(steps=100, hidden=[8, 8], latent=2, activation="tanh", variant="concrete"),
        species=["b", "d"],
        seed=1,
        progress=False,
    )
    bset = AEBankSet([g1, g2], names)
    probe = gen.standard_normal((20, 6)).astype(np.float32) * 5
    err = bset.reconstruction_errors(probe, chunk_size=7)
    np.testing.assert_allclose(err[:, [0, 2]], g1.reconstruction_errors(probe), rtol=1e-6)
    np.testing.assert_allclose(err[:, [1, 3]], g2.reconstruction_errors(probe), rtol=1e-6)
    bset.calibrate_identification(x[:, 150:])
    res = bset.identify(x[:, :50].reshape(-1, 6))
    assert res.species == names and res.index.shape == (200,)
    assert bset.selected_features("b").shape == (2,)


def test_auroc_and_ece_against_known_answers():
    pytest.importorskip("sklearn")
    from sklearn.metrics import roc_auc_score

    gen = np.random.default_rng(6)
    neg, pos = gen.normal(0, 1, 300), gen.normal(0.7, 1, 200)
    pos[:20] = neg[:20]  # ties
    want = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[neg, pos])
    assert auroc(neg, pos) == pytest.approx(want, abs=1e-12)
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    # two bins: scores 0.25 (1 of 2 right) and 0.95 (2 of 2 right)
    ece = expected_calibration_error(np.array([0.25, 0.25, 0.95, 0.95]), np.array([1, 0, 1, 1]))
    assert ece == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)


def test_identify_runs_on_a_given_device():
    bank = train_autoencoders(_arcs(2, 40, seed=7), _cfg(steps=5), seed=0, progress=False)
    cal = calibrate(bank, _arcs(2, 40, seed=7), device=torch.device("cpu"))
    res = identify(bank, _arcs(2, 10, seed=8)[0], cal, device="cpu")
    assert res.index.shape == (10,)
