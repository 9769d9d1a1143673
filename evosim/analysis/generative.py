"""The MAE's generative side scored against the truth: decoded AEs, traits, ancestors.

Everything the MAE gives here (codes, decoded AEs, generated instances) is computed before
the truth is read; the true traits, the tree and the ancestors' instances are only used to
score. Four scores (:func:`generative_scores`):

*Decoded-AE fidelity.* For every species, the reconstruction MSE of the AE decoded from
its code on its held-out instances (the validation instances its own AE never trained
on), divided by its own AE's MSE on them. The same for species held out of the MAE's fit:
``k`` folds over species, the MAE refitted on the others, the held-out species' AEs
encoded by the refitted MAE (:meth:`~evosim.meta.MetaResult.encode`: the encoder's guess
refined through the decoder) and decoded, and the same from the encoder's guess alone;
beside them, the nearest training species' AE (nearest to the encoded code in the
refitted MAE's latent space) and the projection of the held-out AE's aligned weights
onto as many principal components of the training species' aligned weights as the MAE's
code has (single-architecture worlds only).

*Trait recovery.* Cross-validated ridge R^2 of the true species traits from the MAE's
latents and from every baseline's distances (their classical-MDS coordinates: for
Euclidean distances between feature vectors these are the features up to a rotation,
which ridge regression does not see; for other distances, their best Euclidean
approximation). Ridge's penalty is chosen inside each training fold by exact
leave-one-out error (Golub, Heath & Wahba 1979); R^2 is ``1 - SSE / SST`` per trait on
the pooled out-of-fold predictions, averaged over traits that vary.

*Ancestors by interpolation.* For every cherry (two extant sister species) of the true
tree, the AE decoded at the midpoint of the sisters' codes is scored on instances of their
true parent (``sim.instances_of(parent)``): reconstruction MSE, and the MMD between
instances it generates (:meth:`~evosim.meta.MetaResult.generate`) and the parent's
(Gaussian kernel, bandwidth the median distance among the parent's instances; unbiased
estimate of MMD^2, Gretton et al. 2012). Against each sister's own AE and against the
average of the sisters' aligned weights (one sister's hidden units permuted to match the
other's, then averaged); these generate by decoding Gaussian codes fitted to their codes of
the sisters' instances. And against each sister's decoded AE (its own code through the same
decoder, generating as the midpoint does): the decoder's error is then on both sides, so
this comparison scores where the midpoint lies in the latent space. Beside them, a
yardstick from the truth: how often the midpoint of the sisters' true traits is nearer the
parent's true traits than both sisters' are, on these cherries and in expectation under
Brownian motion (:mod:`evosim.analysis.midpoint_bound`).

*A line through the latent space* (``circles``): AEs decoded along the latents' first
principal axis generate circles; their radii should change monotonically along it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from evosim.analysis.midpoint_bound import brownian_midpoint_wins, midpoint_wins
from evosim.seeding import rng as make_rng

__all__ = [
    "ancestor_scores",
    "cherries",
    "classical_mds",
    "fidelity_scores",
    "figure_data_json",
    "generative_markdown",
    "generative_scores",
    "latent_line",
    "median_bandwidth",
    "member_reconstruct",
    "mmd2",
    "ridge_cv_r2",
    "scored_cherries",
    "trait_recovery",
]

log = logging.getLogger(__name__)

#: Instances per set in MMD estimates (subsampled above it).
MMD_INSTANCES = 256
#: Ridge penalties, in units of the mean squared singular value of the centred features.
RIDGE_ALPHAS = np.logspace(-4, 2, 13)
#: Folds of the trait-recovery cross-validation.
TRAIT_FOLDS = 5
#: Points along the latent line (circles).
LINE_POINTS = 7
#: Above this many species, held-out decoding refits the MAE once, holding out a seeded
#: sample of at most MAX_HELDOUT species (a median over 256 species has a standard error
#: of about 8% of the ratios' spread), and at most MAX_CHERRIES cherries (a seeded sample)
#: are scored.
LARGE_WORLD = 256
MAX_HELDOUT = 256
MAX_CHERRIES = 256
#: Trait recovery above this many species uses a seeded sample of them, the same for every
#: method: the classical MDS of every baseline's distances costs S^3, hours at 10,000
#: species, while the standard error of an R^2 over 2,048 species is about
#: 2 R (1 - R^2) / sqrt(2,048), 0.01 at R^2 = 0.7 (Olkin & Finn 1995).
MAX_TRAIT_SPECIES = 2048


# ---------------------------------------------------------------------------- AE helpers


def member_reconstruct(bank: Any, members: list[int], x: np.ndarray) -> np.ndarray:
    """Reconstructions ``[K, n, D]`` of ``x [K, n, D]``, row ``i`` by member ``members[i]``.

    Works for an :class:`~evosim.train.AEBank` and an :class:`~evosim.train.AEBankSet`.
    """
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    if not getattr(bank, "is_mixed", False):
        return np.asarray(bank.reconstruct(x, list(members)))
    for i, m in enumerate(members):
        g, j = bank.locate(int(m))
        out[i] = bank.groups[g].reconstruct(x[i], j)
    return out


def _member_spec_params(bank: Any, member: int) -> tuple[Any, dict[str, torch.Tensor]]:
    if getattr(bank, "is_mixed", False):
        g, j = bank.locate(member)
        grp = bank.groups[g]
        return grp.spec, {k: v[j] for k, v in grp.params.items()}
    return bank.spec, {k: v[member] for k, v in bank.params.items()}


def _mse(recon: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((np.asarray(recon, dtype=np.float64) - x) ** 2).mean(axis=(-1, -2))


def heldout_instances(sim: Any, bank: Any) -> tuple[np.ndarray, bool]:
    """Each species' validation instances ``[S, n_val, D]`` (replicate 0's split).

    These are the instances the species' own AE (replicate 0) never trained on. Returns
    ``(instances, True)``, or every instance and ``False`` when the AEs held none out.
    """
    from evosim.train.trainer import member_splits

    pos = {s: i for i, s in enumerate(sim.species)}
    inst = np.asarray(sim.instances, dtype=np.float32)[[pos[s] for s in bank.species]]
    info = getattr(bank, "info", {}) or {}
    config = info.get("config") or {}
    fraction = float(config.get("validation_fraction", 0.0))
    seed = info.get("seed", getattr(getattr(sim, "scenario", None), "seed", None))
    n = inst.shape[1]
    if fraction <= 0 or seed is None or int(round(n * fraction)) < 1:
        return inst, False
    _, val, _ = member_splits(int(seed), list(bank.species), int(bank.replicates), n, fraction)
    rows = val[:: int(bank.replicates)]
    return np.stack([inst[i][rows[i]] for i in range(len(inst))]), True


def _first_members(bank: Any) -> list[int]:
    return [i * int(bank.replicates) for i in range(len(bank.species))]


def _own_mse(bank: Any, x: np.ndarray) -> np.ndarray:
    return _mse(member_reconstruct(bank, _first_members(bank), x), x)


def _decoded_mse(meta: Any, z: np.ndarray, x: np.ndarray) -> np.ndarray:
    dec = meta.decode(z)
    return _mse(dec.reconstruct(x, list(range(dec.n_members))), x)


# ---------------------------------------------------------------------------- fidelity


def _summary(ratios: np.ndarray) -> dict[str, float]:
    r = np.asarray(ratios, dtype=np.float64)
    return {
        "median": float(np.median(r)),
        "mean": float(np.mean(r)),
        "q90": float(np.quantile(r, 0.9)),
        "max": float(np.max(r)),
    }


def _aligned_pca_mse(
    train_bank: Any, held_bank: Any, k: int, x: np.ndarray, seed: int
) -> np.ndarray:
    """MSE of held-out AEs' aligned weights projected on k PCs of the training species'."""
    from evosim.analysis.baselines import principal_axes
    from evosim.meta.representation import RepresentationMap
    from evosim.train import AEBank

    rep = RepresentationMap.fit(train_bank, "aligned", seed=seed)
    w_tr = rep.features(train_bank).astype(np.float64)
    w_ho = rep.features(held_bank).astype(np.float64)
    mean, v = principal_axes(w_tr, k)
    proj = mean + (w_ho - mean) @ v.T @ v
    params = rep.to_params(((proj - rep.mean) / rep.scale).astype(np.float32))
    pb = AEBank.from_params(
        held_bank.spec,
        {
            n: torch.as_tensor(np.ascontiguousarray(p), dtype=torch.float32)
            for n, p in params.items()
        },
        held_bank.species,
        held_bank.replicates,
    )
    return _mse(pb.reconstruct(x, _first_members(pb)), x)


def fidelity_scores(
    sim: Any, bank: Any, meta: Any, *, folds: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decoded-AE fidelity of training and held-out species (see the module docstring).

    Returns ``(summary for metrics.json, per-species data for figures)``.
    """
    from evosim.meta import fit_meta_autoencoder

    held, is_val = heldout_instances(sim, bank)
    own = _own_mse(bank, held)
    train_ratio = _decoded_mse(meta, meta.latents, held) / own
    out: dict[str, Any] = {
        "instances": "validation" if is_val else "training (the AEs held none out)",
        "train": _summary(train_ratio),
    }
    data: dict[str, Any] = {"species": list(bank.species), "train": train_ratio.tolist()}
    s = len(bank.species)
    folds = min(int(folds), s // 2)
    if folds < 2:
        out["heldout"] = {"not_applicable": "fewer than 2 folds of species"}
        return out, data
    perm = make_rng(seed, "generative", "folds").permutation(s)
    parts = np.array_split(perm, folds)
    if s > LARGE_WORLD:
        parts = [parts[0][:MAX_HELDOUT]]  # one refit, a seeded sample of species held out
    mae_r = np.full(s, np.nan)
    enc_r = np.full(s, np.nan)
    near_r = np.full(s, np.nan)
    pca_r = np.full(s, np.nan)
    single = not getattr(bank, "is_mixed", False)
    for f, part in enumerate(parts):
        test = sorted(int(i) for i in part)
        train = [i for i in range(s) if i not in set(test)]
        tr_bank = bank.subset([bank.species[i] for i in train])
        ho_bank = bank.subset([bank.species[i] for i in test])
        log.info(
            "generative scores: MAE fold %d of %d (%d species held out)", f + 1, folds, len(test)
        )
        side = getattr(meta, "side_information", None)
        sub = fit_meta_autoencoder(
            tr_bank,
            meta.config,
            seed=meta.seed,
            progress=False,
            side_information=None if side is None else dict(zip(side["species"], side["values"])),
        )
        reps = int(bank.replicates)
        guess = sub.encode(ho_bank, steps=0)  # the encoder's, refined below as encode does
        z = sub.refine(ho_bank, guess).reshape(len(test), reps, -1).mean(axis=1)
        x = held[test]
        mae_r[test] = _decoded_mse(sub, z, x) / own[test]
        z_guess = guess.reshape(len(test), reps, -1).mean(axis=1)
        enc_r[test] = _decoded_mse(sub, z_guess, x) / own[test]
        d = ((z[:, None, :] - sub.latents[None, :, :]) ** 2).sum(-1)
        nearest = [int(train[j]) for j in d.argmin(axis=1)]
        near = member_reconstruct(bank, [i * reps for i in nearest], x)
        near_r[test] = _mse(near, x) / own[test]
        if single:
            pca_r[test] = (
                _aligned_pca_mse(tr_bank, ho_bank, sub.latent_dim, x, meta.seed) / own[test]
            )
    done = np.isfinite(mae_r)
    mae_r, enc_r, near_r, pca_r = mae_r[done], enc_r[done], near_r[done], pca_r[done]
    out["heldout"] = {
        "folds": folds,
        "refits": len(parts),
        "species": int(done.sum()),
        "encode_steps": int(meta.config.encode_steps),
        "mae": _summary(mae_r),
        "mae_encoder_only": _summary(enc_r),
        "nearest_training_ae": _summary(near_r),
        "pca_of_aligned_weights": _summary(pca_r)
        if single
        else {"not_applicable": "species have AEs of different architectures"},
        "mae_below_nearest": float(np.mean(mae_r < near_r)),
    }
    data["heldout"] = mae_r.tolist()
    data["heldout_encoder"] = enc_r.tolist()
    data["nearest"] = near_r.tolist()
    data["pca"] = pca_r.tolist() if single else None
    return out, data


# ---------------------------------------------------------------------------- traits


def classical_mds(d: np.ndarray) -> np.ndarray:
    """Classical (Torgerson) MDS coordinates ``[S, r]`` of a distance matrix, every axis with a
    positive eigenvalue (above ``1e-9`` of the largest)."""
    d2 = np.asarray(d, dtype=np.float64) ** 2
    d2 = 0.5 * (d2 + d2.T)
    # double centring, J D^2 J with J = I - 1/n, by its means: S^2 work instead of S^3
    rows = d2.mean(axis=1)
    b = -0.5 * (d2 - rows[:, None] - rows[None, :] + rows.mean())
    w, v = np.linalg.eigh(b)
    keep = w > 1e-9 * max(w.max(), 1e-300)
    return v[:, keep] * np.sqrt(w[keep])


def ridge_cv_r2(
    x: np.ndarray, y: np.ndarray, *, folds: int = TRAIT_FOLDS, rng: np.random.Generator
) -> float:
    """Cross-validated ridge R^2 of targets ``y [S, t]`` from features ``x [S, f]``.

    K folds over rows; in each training fold, features and targets are centred and the
    penalty (from :data:`RIDGE_ALPHAS` times the mean squared singular value) is the one
    with the least exact leave-one-out error. R^2 per target on the pooled out-of-fold
    predictions, averaged over targets with non-zero variance.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    n = len(x)
    folds = min(folds, n)
    pred = np.empty_like(y)
    for test in np.array_split(rng.permutation(n), folds):
        train = np.setdiff1d(np.arange(n), test)
        mx, my = x[train].mean(0), y[train].mean(0)
        xc, yc = x[train] - mx, y[train] - my
        if xc.shape[1] == 0 or not np.any(xc):
            pred[test] = my
            continue
        u, s, vt = np.linalg.svd(xc, full_matrices=False)
        uy = u.T @ yc
        best, best_err = None, np.inf
        for a in RIDGE_ALPHAS * np.mean(s**2):
            f = s**2 / (s**2 + a)
            fit = u @ (f[:, None] * uy)
            h = (u**2) @ f
            err = (((yc - fit) / np.clip(1 - h, 1e-9, None)[:, None]) ** 2).sum()
            if err < best_err:
                best, best_err = a, err
        coef = vt.T @ ((s / (s**2 + best))[:, None] * uy)
        pred[test] = (x[test] - mx) @ coef + my
    sst = ((y - y.mean(0)) ** 2).sum(0)
    ok = sst > 1e-12 * max(sst.max(), 1e-300)
    r2 = 1.0 - ((y - pred) ** 2).sum(0)[ok] / sst[ok]
    return float(np.mean(r2)) if ok.any() else float("nan")


def trait_recovery(
    sim: Any, species: list[str], features: dict[str, np.ndarray], *, seed: int
) -> dict[str, float]:
    """Ridge R^2 of the true traits from each feature set (``{name: [S, f]}``); same folds."""
    y = np.stack([np.asarray(sim.traits[s], dtype=np.float64) for s in species])
    return {
        name: ridge_cv_r2(f, y, rng=make_rng(seed, "generative", "traits"))
        for name, f in features.items()
    }


# ---------------------------------------------------------------------------- ancestors


def cherries(sim: Any) -> list[tuple[str, str, str]]:
    """``(sister a, sister b, parent)`` for every cherry of the true extant tree.

    The parent is the sisters' most recent common ancestor in the full tree (a node with
    traits, whose instances ``sim.instances_of`` can draw).
    """
    extant = sim.extant_tree()
    out = []
    for node in extant.internal_nodes:
        kids = extant.children(node)
        leaves = [k for k in kids if extant.is_leaf(k)]
        if len(kids) == 2 and len(leaves) == 2:
            a, b = sorted(leaves)
            out.append((a, b, sim.tree.mrca([a, b])))
    return sorted(out)


def scored_cherries(sim: Any, seed: int) -> list[tuple[str, str, str]]:
    """The cherries the ancestor scores use: all of :func:`cherries`, or a seeded sample of
    :data:`MAX_CHERRIES` of them when there are more."""
    pairs = cherries(sim)
    if len(pairs) > MAX_CHERRIES:
        keep = make_rng(seed, "generative", "cherries").choice(
            len(pairs), MAX_CHERRIES, replace=False
        )
        pairs = [pairs[i] for i in sorted(keep)]
    return pairs


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 between samples ``x [n, D]`` and ``y [m, D]``, Gaussian kernel."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64))
    g = -0.5 / bandwidth**2

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(g * torch.cdist(a, b).pow(2))

    n, m = len(xt), len(yt)
    kxx, kyy, kxy = k(xt, xt), k(yt, yt), k(xt, yt)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def median_bandwidth(x: np.ndarray) -> float:
    """The MMD kernel's bandwidth for a sample ``x [n, D]``: its median pairwise distance
    (1 if that is 0)."""
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    d = torch.cdist(xt, xt)
    return float(d[np.triu_indices(len(xt), 1)].median()) or 1.0


def _sub(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= MMD_INSTANCES:
        return x
    return x[np.sort(rng.choice(len(x), MMD_INSTANCES, replace=False))]


def _ae_generate(
    spec: Any, params: dict[str, torch.Tensor], ref: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Decode ``n`` Gaussian codes fitted to one AE's codes of ``ref``."""
    from evosim.train import model as ae_model

    p = {k: v.unsqueeze(0) for k, v in params.items()}
    with torch.no_grad():
        codes = ae_model.encode(p, spec, torch.as_tensor(ref, dtype=torch.float32)[None])[0]
        c = codes.double().numpy()
        mean, cov = c.mean(0), np.atleast_2d(np.cov(c, rowvar=False))
        cov = cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov))
        draws = rng.multivariate_normal(mean, cov, size=n, method="cholesky")
        out = ae_model.decode(p, spec, torch.as_tensor(draws, dtype=torch.float32)[None])[0]
    return out.numpy()


def _reconstruct_one(spec: Any, params: dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
    from evosim.train import model as ae_model

    p = {k: v.unsqueeze(0) for k, v in params.items()}
    with torch.no_grad():
        return ae_model.reconstruct(p, spec, torch.as_tensor(x, dtype=torch.float32)[None])[
            0
        ].numpy()


def ancestor_scores(
    sim: Any, bank: Any, meta: Any, *, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Midpoint-decoded ancestors of every cherry, scored on the true parent (module docstring)."""
    from evosim.meta.representation import align_params

    pairs = scored_cherries(sim, seed)
    if not pairs:
        return {"not_applicable": "the true tree has no cherry"}, {}
    index = {s: i for i, s in enumerate(bank.species)}
    pos = {s: i for i, s in enumerate(sim.species)}
    inst = np.asarray(sim.instances, dtype=np.float32)
    r = int(bank.replicates)
    rows = []
    first = np.stack([meta.latents[index[a]] for a, _, _ in pairs])
    second = np.stack([meta.latents[index[b]] for _, b, _ in pairs])
    mids = (first + second) / 2
    n_gen = MMD_INSTANCES
    generated = meta.generate(mids, n_gen, seed=seed)
    dec = meta.decode(mids)
    # the sisters' own codes, decoded: rows [0, P) the first sisters, [P, 2P) the second
    sisters = np.concatenate([first, second])
    sisters_generated = meta.generate(sisters, n_gen, seed=seed)
    sisters_dec = meta.decode(sisters)
    for c, (a, b, parent) in enumerate(pairs):
        g = make_rng(seed, "generative", "ancestor", parent)
        xp = np.asarray(sim.instances_of(parent), dtype=np.float32)
        xa, xb = inst[pos[a]], inst[pos[b]]
        xps = _sub(xp, g)
        bw = median_bandwidth(xps)
        row: dict[str, Any] = {"a": a, "b": b, "parent": parent}
        row["mse_midpoint"] = float(_mse(dec.reconstruct(xp, c), xp))
        row["mmd_midpoint"] = mmd2(generated[c], xps, bw)
        for name, j in (("a", c), ("b", len(pairs) + c)):
            row[f"mse_decoded_{name}"] = float(_mse(sisters_dec.reconstruct(xp, j), xp))
            row[f"mmd_decoded_{name}"] = mmd2(sisters_generated[j], xps, bw)
        (spec_a, pa), (spec_b, pb) = (
            _member_spec_params(bank, index[a] * r),
            _member_spec_params(bank, index[b] * r),
        )
        for name, spec, p, own in (("a", spec_a, pa, xa), ("b", spec_b, pb, xb)):
            row[f"mse_{name}"] = float(_mse(_reconstruct_one(spec, p, xp), xp))
            row[f"mmd_{name}"] = mmd2(_ae_generate(spec, p, _sub(own, g), n_gen, g), xps, bw)
        if spec_a == spec_b:
            stacked = {k: torch.stack([pa[k], pb[k]]) for k in pa}
            al = align_params(stacked, 0, seed=seed)
            avg = {k: torch.as_tensor(v.mean(axis=0)) for k, v in al.items()}
            both = np.concatenate([_sub(xa, g), _sub(xb, g)])
            row["mse_average"] = float(_mse(_reconstruct_one(spec_a, avg, xp), xp))
            row["mmd_average"] = mmd2(_ae_generate(spec_a, avg, both, n_gen, g), xps, bw)
        rows.append(row)

    def frac(key: str, better_than: list[str]) -> float:
        return float(np.mean([all(r[key] < r[o] for o in better_than) for r in rows]))

    def mean(key: str) -> float:
        vals = [r[key] for r in rows if key in r]
        return float(np.mean(vals)) if vals else float("nan")

    def mean_min(prefix: str) -> float:
        return float(np.mean([min(r[f"{prefix}_a"], r[f"{prefix}_b"]) for r in rows]))

    tr = sim.traits
    true_wins = midpoint_wins(
        np.stack([tr[p] for _, _, p in pairs]),
        np.stack([tr[a] for a, _, _ in pairs]),
        np.stack([tr[b] for _, b, _ in pairs]),
    )
    out: dict[str, Any] = {
        "cherries": len(rows),
        "mse": {
            "midpoint": mean("mse_midpoint"),
            "best_sister": mean_min("mse"),
            "mean_sister": float(np.mean([(r["mse_a"] + r["mse_b"]) / 2 for r in rows])),
            "average_weights": mean("mse_average"),
            "best_decoded_sister": mean_min("mse_decoded"),
        },
        "mmd2": {
            "midpoint": mean("mmd_midpoint"),
            "best_sister": mean_min("mmd"),
            "mean_sister": float(np.mean([(r["mmd_a"] + r["mmd_b"]) / 2 for r in rows])),
            "average_weights": mean("mmd_average"),
            "best_decoded_sister": mean_min("mmd_decoded"),
        },
        "midpoint_beats_both_sisters": {
            "mse": frac("mse_midpoint", ["mse_a", "mse_b"]),
            "mmd2": frac("mmd_midpoint", ["mmd_a", "mmd_b"]),
        },
        "midpoint_beats_both_decoded_sisters": {
            "mse": frac("mse_midpoint", ["mse_decoded_a", "mse_decoded_b"]),
            "mmd2": frac("mmd_midpoint", ["mmd_decoded_a", "mmd_decoded_b"]),
        },
        # yardsticks: how often the midpoint of the sisters' true traits itself wins
        "true_traits_midpoint_beats_both_sisters": {
            "these_cherries": float(np.mean(true_wins)),
            "brownian_expectation": brownian_midpoint_wins(len(tr[pairs[0][2]])),
        },
    }
    with_avg = [r for r in rows if "mse_average" in r]
    if with_avg:
        out["midpoint_beats_average_weights"] = {
            "mse": float(np.mean([r["mse_midpoint"] < r["mse_average"] for r in with_avg])),
            "mmd2": float(np.mean([r["mmd_midpoint"] < r["mmd_average"] for r in with_avg])),
        }
    return out, {"rows": rows}


# ---------------------------------------------------------------------------- latent line


def latent_line(meta: Any, *, n: int = 200, seed: int) -> dict[str, Any]:
    """AEs decoded along the latents' first principal axis, and what they generate.

    Points run from the smallest to the largest projection of a species' latent on the
    axis. For 2-D data (``circles``) the radius of each generated set (mean distance to its
    centroid) is returned with its Spearman correlation with the position.
    """
    z = np.asarray(meta.latents, dtype=np.float64)
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    axis = vt[0]
    proj = (z - mean) @ axis
    t = np.linspace(proj.min(), proj.max(), LINE_POINTS)
    codes = mean + t[:, None] * axis
    gen = meta.generate(codes, n, seed=seed)
    out: dict[str, Any] = {"position": t.tolist(), "generated": gen}
    if gen.shape[-1] == 2:
        radius = np.linalg.norm(gen - gen.mean(axis=1, keepdims=True), axis=-1).mean(axis=1)
        out["radius"] = radius.tolist()
        out["radius_spearman"] = float(spearmanr(t, radius).statistic)
    return out


# ---------------------------------------------------------------------------- all


def generative_scores(
    sim: Any,
    bank: Any,
    meta: Any,
    *,
    distances: dict[str, np.ndarray],
    folds: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every generative score (module docstring).

    Parameters
    ----------
    sim, bank, meta
        The simulation, the AE bank and the fitted MAE.
    distances
        ``{baseline: [S, S]}`` distances of the baselines (for trait recovery).
    folds
        Folds over species for held-out decoding (the MAE is refitted this many times);
        below 2, held-out decoding is skipped.
    seed
        Seeds folds, subsamples and generated instances.

    Returns
    -------
    (dict, dict)
        Summaries for ``metrics.json`` and per-species/per-cherry data for figures.
    """
    fid, fid_data = fidelity_scores(sim, bank, meta, folds=folds, seed=seed)
    species = list(bank.species)
    rows = np.arange(len(species))
    if len(species) > MAX_TRAIT_SPECIES:
        picked = make_rng(seed, "generative", "trait species").choice(
            len(species), MAX_TRAIT_SPECIES, replace=False
        )
        rows = np.sort(picked)
    features = {"mae": np.asarray(meta.tree_latents, dtype=np.float64)[rows]}
    for name, d in distances.items():
        if name not in ("traits", "random"):
            features[name] = classical_mds(np.asarray(d)[np.ix_(rows, rows)])
    traits = trait_recovery(sim, [species[i] for i in rows], features, seed=seed)
    anc, anc_data = ancestor_scores(sim, bank, meta, seed=seed)
    summary: dict[str, Any] = {"fidelity": fid, "trait_r2": traits, "ancestors": anc}
    if len(rows) < len(species):
        summary["trait_species"] = len(rows)
    figures: dict[str, Any] = {"fidelity": fid_data, "ancestors": anc_data}
    family = getattr(getattr(getattr(sim, "scenario", None), "species", None), "family", None)
    if family == "circles":
        line = latent_line(meta, seed=seed)
        summary["latent_line"] = {
            "radius": line["radius"],
            "radius_spearman": line["radius_spearman"],
        }
        figures["latent_line"] = line
    return summary, figures


# ---------------------------------------------------------------------------- report


def _trait_sample(summary: dict[str, Any]) -> str:
    """The report's words for trait recovery on a sample of species (empty: all species)."""
    n = summary.get("trait_species")
    return f", on a seeded sample of {n} species" if n else ""


def _heldout_design(held: dict[str, Any]) -> str:
    """How held-out species were chosen, for the report: k-fold, or one refit's sample."""
    if held.get("refits", held["folds"]) < held["folds"]:
        return f"one refit, a sample of {held['species']} species"
    return f"{held['folds']}-fold"


def _f(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def generative_markdown(summary: dict[str, Any]) -> list[str]:
    """The report.md section of the generative scores (lines)."""
    lines = ["## The MAE's decoder: generative scores", ""]
    fid = summary.get("fidelity", {})
    if fid:
        lines += [
            "Decoded-AE fidelity: reconstruction MSE of the AE decoded from a species' code on "
            f"the species' {fid.get('instances', 'held-out')} instances, divided by its own "
            "AE's (1 = as good as the original).",
            "",
            "| AEs | median | mean | 90% | max |",
            "|---|---:|---:|---:|---:|",
        ]

        def row(label: str, s: dict[str, Any]) -> str:
            if "not_applicable" in s:
                return f"| {label} | not applicable: {s['not_applicable']} | | | |"
            return (
                f"| {label} | {_f(s['median'])} | {_f(s['mean'])} | {_f(s['q90'])} | "
                f"{_f(s['max'])} |"
            )

        lines.append(row("MAE, species it was fitted on", fid["train"]))
        held = fid.get("heldout", {})
        if "not_applicable" in held:
            lines.append(f"| held-out species | not applicable: {held['not_applicable']} | | | |")
        elif held:
            design = _heldout_design(held)
            if "mae_encoder_only" in held:
                lines += [
                    row(
                        f"MAE, species held out ({design}), encoded "
                        f"({held['encode_steps']} refining steps)",
                        held["mae"],
                    ),
                    row(
                        "MAE, species held out, the encoder's guess alone",
                        held["mae_encoder_only"],
                    ),
                ]
            else:  # scored by an earlier evosim: the encoder's guess, then codes fitted
                lines += [
                    row(f"MAE, species held out ({design}), encoder", held["mae"]),
                    row("MAE, species held out, codes fitted", held["mae_fitted_codes"]),
                ]
            lines += [
                row("nearest training species' AE", held["nearest_training_ae"]),
                row("PCA of aligned weights", held["pca_of_aligned_weights"]),
                "",
                f"The decoded AE beats the nearest training species' AE for "
                f"{held['mae_below_nearest']:.0%} of held-out species.",
            ]
        lines.append("")
    traits = summary.get("trait_r2", {})
    if traits:
        lines += [
            "Trait recovery: cross-validated ridge R^2 of the true species traits from each "
            "method's latents / distances (classical MDS coordinates)"
            + _trait_sample(summary)
            + ".",
            "",
            "| features | R^2 |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {_f(v)} |" for name, v in traits.items()]
        lines.append("")
    anc = summary.get("ancestors", {})
    if "not_applicable" in anc:
        lines += [f"Ancestors: not applicable ({anc['not_applicable']}).", ""]
    elif anc:
        beats = anc["midpoint_beats_both_sisters"]
        lines += [
            f"Ancestors by interpolation ({anc['cherries']} cherries of the true tree): the AE "
            "decoded at the midpoint of two sisters' codes, scored on their true parent's "
            "instances (mean over cherries; lower is better).",
            "",
            "| AE | MSE on parent | MMD^2 to parent |",
            "|---|---:|---:|",
        ]
        for key, label in (
            ("midpoint", "decoded midpoint"),
            ("best_sister", "better sister's own AE"),
            ("mean_sister", "sisters' own AEs (mean)"),
            ("average_weights", "average of sisters' aligned weights"),
            ("best_decoded_sister", "better sister's decoded AE"),
        ):
            if key in anc["mse"]:  # an older run's scores lack the decoded sisters
                lines.append(f"| {label} | {_f(anc['mse'][key])} | {_f(anc['mmd2'][key])} |")
        lines += [
            "",
            f"The midpoint beats both sisters in {beats['mse']:.0%} of cherries by MSE and "
            f"{beats['mmd2']:.0%} by MMD.",
            "",
        ]
        decoded = anc.get("midpoint_beats_both_decoded_sisters")
        if decoded:
            lines += [
                "Against the sisters' decoded AEs (their own codes through the same decoder, "
                "so that the decoder's error is on both sides) it wins in "
                f"{decoded['mse']:.0%} of cherries by MSE and {decoded['mmd2']:.0%} by MMD: "
                "this scores where the midpoint lies in the latent space, apart from how "
                "closely the decoder reproduces the species.",
                "",
            ]
        bound = anc.get("true_traits_midpoint_beats_both_sisters")
        if bound:
            lines += [
                "For scale: the midpoint of the sisters' true traits is nearer the parent's "
                f"true traits than both sisters' are in {bound['these_cherries']:.0%} of these "
                "cherries (under Brownian motion with this many traits, "
                f"{bound['brownian_expectation']:.0%} of cherries in expectation). The parent "
                "is not at its daughters' midpoint, so a midpoint ancestor, however well "
                "decoded, cannot be expected to win much more often than that.",
                "",
            ]
    line = summary.get("latent_line")
    if line:
        lines += [
            "Along the first principal axis of the latent space the decoded AEs generate "
            f"circles whose radius has Spearman correlation {_f(line['radius_spearman'])} "
            "with the position.",
            "",
        ]
    lines += ["![generative](figures/generative.png)", ""]
    if line:
        lines += ["![latent line](figures/latent_line.png)", ""]
    return lines


def figure_data_json(figures: dict[str, Any]) -> dict[str, Any]:
    """The figure data as JSON-safe lists (``generative.json``; ``evosim plot`` redraws)."""

    def safe(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): safe(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [safe(v) for v in x]
        if isinstance(x, np.ndarray):
            return safe(np.round(x.astype(np.float64), 6).tolist())
        if isinstance(x, np.generic):
            return safe(x.item())
        if isinstance(x, float) and not np.isfinite(x):
            return None
        return x

    return safe(figures)
