"""Vector representations of trained autoencoders, the meta-autoencoder's input.

Three kinds, each a row per member of an :class:`~evosim.train.AEBank`:

``raw``
    The flattened parameters, in the bank's layer order.
``aligned``
    The hidden units of every member permuted, layer by layer, to match a reference
    member by weight matching (Ainsworth et al. 2023, *Git Re-Basin*, section 3.2: a
    linear assignment per layer, solved by coordinate descent over the layers), then
    flattened. The reference is the member nearest all others in raw weight space (the
    medoid), chosen without the tree. The bottleneck is left alone: a linear code can be
    mixed by any invertible matrix (encoder ``W A``, decoder ``A^-1 W``) without changing
    the function, and no permutation removes that symmetry.
``functional``
    What the AE computes, on one shared set of probe inputs: its reconstructions of the
    probes, plus a summary of its codes that is invariant to every invertible affine map
    of the code. Codes are whitened by their own covariance over the probes
    (``Z_w = (Z - mean) C^{-1/2}``); for ``Z' = Z A + c`` the whitened codes differ by an
    orthogonal matrix only, so the probe-probe distance matrix of the whitened codes is
    the same for every such ``A``. Free of the permutation and the bottleneck symmetry by
    construction.

Coordinates are centred per feature over the members and scaled per block (see
:func:`represent`), and the :class:`RepresentationMap` keeps the mean and scale so that
decoded coordinates can be mapped back into parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from evosim.errors import ScenarioError
from evosim.seeding import rng as make_rng

__all__ = [
    "Frame",
    "Kind",
    "RepresentationMap",
    "align_params",
    "flatten_params",
    "make_probes",
    "medoid",
    "represent",
    "unflatten_params",
]

Kind = Literal["raw", "aligned", "functional"]
KINDS: tuple[str, ...] = ("raw", "aligned", "functional")

#: Probes whose whitened codes enter the pairwise-distance summary (P_c (P_c - 1) / 2 features).
CODE_PROBES = 48


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------- params <-> vectors


def flatten_params(params: dict[str, Any]) -> np.ndarray:
    """Stacked parameters ``{name: [M, ...]}`` -> ``[M, F]`` float32, in the dict's key order."""
    blocks = [_numpy(v).reshape(_numpy(v).shape[0], -1) for v in params.values()]
    return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)


def unflatten_params(
    flat: np.ndarray | torch.Tensor, shapes: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    """``[M, F]`` -> ``{name: [M, *shape]}``; tensors stay tensors (differentiably)."""
    out: dict[str, Any] = {}
    start = 0
    m = flat.shape[0]
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[:, start : start + size].reshape(m, *shape)
        start += size
    if start != flat.shape[1]:
        raise ValueError(f"expected {start} features for these shapes, got {flat.shape[1]}")
    return out


def _layer_names(params: dict[str, Any], part: str) -> list[str]:
    """``["encoder.0", "encoder.1", ...]`` in layer order."""
    idx = sorted(
        {int(k.split(".")[1]) for k in params if k.startswith(part + ".") and k.endswith(".weight")}
    )
    return [f"{part}.{i}" for i in idx]


def medoid(flat: np.ndarray) -> int:
    """Index of the row with the smallest summed Euclidean distance to all rows."""
    x = torch.as_tensor(flat, dtype=torch.float64)
    d = torch.cdist(x, x)
    return int(torch.argmin(d.sum(dim=1)))


# ---------------------------------------------------------------------------- weight matching


def _match_chain(
    ref: dict[str, np.ndarray],
    mem: dict[str, np.ndarray],
    layers: list[str],
    rng: np.random.Generator,
    max_iter: int = 50,
) -> list[np.ndarray]:
    """Permutations of the hidden units of one chain of layers (member -> reference).

    ``perms[l][a] = b``: reference unit ``a`` of hidden layer ``l`` (output of
    ``layers[l]``) is matched to member unit ``b``. Maximises the summed inner products
    of each unit's incoming weights, bias and outgoing weights (Git Re-Basin weight
    matching), one layer at a time, until no permutation changes.
    """
    n_hidden = len(layers) - 1
    perms = [np.arange(ref[f"{layers[l]}.bias"].shape[0]) for l in range(n_hidden)]
    if n_hidden == 0:
        return perms
    for _ in range(max_iter):
        changed = False
        for l in rng.permutation(n_hidden):
            w_in_ref = ref[f"{layers[l]}.weight"]  # [in, h]
            w_in = mem[f"{layers[l]}.weight"]
            if l > 0:
                w_in = w_in[perms[l - 1], :]
            w_out_ref = ref[f"{layers[l + 1]}.weight"]  # [h, out]
            w_out = mem[f"{layers[l + 1]}.weight"]
            if l + 1 < n_hidden:
                w_out = w_out[:, perms[l + 1]]
            sim = (
                w_in_ref.T @ w_in
                + np.outer(ref[f"{layers[l]}.bias"], mem[f"{layers[l]}.bias"])
                + w_out_ref @ w_out.T
            )
            _, cols = linear_sum_assignment(sim, maximize=True)
            if not np.array_equal(cols, perms[l]):
                old = sim[np.arange(len(cols)), perms[l]].sum()
                new = sim[np.arange(len(cols)), cols].sum()
                if new > old + 1e-12 * max(1.0, abs(old)):
                    perms[l] = cols
                    changed = True
        if not changed:
            break
    return perms


def _apply_chain(
    mem: dict[str, np.ndarray], layers: list[str], perms: list[np.ndarray]
) -> dict[str, np.ndarray]:
    out = dict(mem)
    for l, p in enumerate(perms):
        w, b, w_next = f"{layers[l]}.weight", f"{layers[l]}.bias", f"{layers[l + 1]}.weight"
        out[w] = out[w][:, p]
        out[b] = out[b][p]
        out[w_next] = out[w_next][p, :]
    return out


def align_params(
    params: dict[str, Any], reference: int | dict[str, Any], *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Permute every member's hidden units to match a reference member.

    Parameters
    ----------
    params
        Stacked parameters ``{name: [M, ...]}`` (``encoder.{i}.weight [M, in, out]`` ...).
    reference
        A member index, or one member's unstacked parameters ``{name: [...]}``.
    seed
        Seeds the order in which layers are visited by the coordinate descent.

    Returns
    -------
    dict
        Stacked aligned parameters (NumPy). Each member computes exactly the same
        function as before: only hidden units are permuted, never the input, the
        bottleneck or the output.
    """
    p = {k: _numpy(v) for k, v in params.items()}
    if isinstance(reference, int | np.integer):
        ref = {k: v[int(reference)] for k, v in p.items()}
    else:
        ref = {k: _numpy(v) for k, v in reference.items()}
    m = next(iter(p.values())).shape[0]
    out = {k: v.copy() for k, v in p.items()}
    generator = make_rng(seed, "align")
    for part in ("encoder", "decoder"):
        layers = _layer_names(p, part)
        for i in range(m):
            mem = {k: v[i] for k, v in out.items()}
            perms = _match_chain(ref, mem, layers, generator)
            aligned = _apply_chain(mem, layers, perms)
            for k in out:
                out[k][i] = aligned[k]
    return out


# ---------------------------------------------------------------------------- functional


def make_probes(bank: Any, n: int, off_manifold_fraction: float, seed: int) -> np.ndarray:
    """One shared probe set ``[n, D]`` float32 for functional representations.

    ``round(n * (1 - off_manifold_fraction))`` probes are drawn without replacement
    (with, if there are too few) from ``bank.reference_inputs``; the rest are
    off-manifold: Gaussian with the pooled mean and twice the pooled standard deviation
    along every principal axis (covariance scaled by 4), so they lie around and between
    the species' manifolds.
    """
    if n < 1:
        raise ValueError(f"probes must be >= 1, got {n}")
    if not 0.0 <= off_manifold_fraction <= 1.0:
        raise ValueError(f"off_manifold_fraction must be in [0, 1], got {off_manifold_fraction}")
    ref = np.asarray(_numpy(bank.reference_inputs), dtype=np.float64)
    if ref.ndim != 2 or ref.shape[0] < 2:
        raise ValueError(f"bank.reference_inputs must be [P>=2, D], got shape {ref.shape}")
    gen = make_rng(seed, "probes")
    n_off = int(round(n * off_manifold_fraction))
    n_on = n - n_off
    idx = gen.choice(ref.shape[0], size=n_on, replace=n_on > ref.shape[0])
    on = ref[idx]
    mean = ref.mean(axis=0)
    cov = np.atleast_2d(np.cov(ref, rowvar=False))
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    off = mean + 2.0 * gen.standard_normal((n_off, ref.shape[1])) @ root.T
    return np.concatenate([on, off], axis=0).astype(np.float32)


def whitened_code_distances(
    codes: np.ndarray | torch.Tensor, n_pairs_probes: int = CODE_PROBES
) -> np.ndarray | torch.Tensor:
    """Probe-probe distances of whitened codes: ``[M, P, k] -> [M, P_c (P_c - 1) / 2]``.

    The distance between probes i and j is the Mahalanobis distance of their codes under
    the member's own code covariance over all ``P`` probes (a ridge of ``1e-6`` times its
    mean variance keeps a collapsed code finite), divided by ``sqrt(k)`` so that codes of
    different sizes give distances on one scale; distances are among the first
    ``P_c = min(P, n_pairs_probes)`` probes. Invariant to any invertible affine map of each
    member's code (see the module docstring). A tensor in gives a differentiable tensor
    out (in its dtype); NumPy in gives float32 NumPy out (computed in float64).
    """
    as_numpy = not isinstance(codes, torch.Tensor)
    z = torch.as_tensor(codes, dtype=torch.float64) if as_numpy else codes
    z = z - z.mean(dim=1, keepdim=True)
    m, p, k = z.shape
    cov = z.transpose(1, 2) @ z / p
    ridge = 1e-6 * torch.diagonal(cov, dim1=1, dim2=2).sum(-1).clamp_min(1e-12) / k
    cov = cov + ridge[:, None, None] * torch.eye(k, dtype=z.dtype, device=z.device)
    chol = torch.linalg.cholesky(cov)
    pc = min(p, n_pairs_probes)
    # rows of L^{-1} z_i: Euclidean distances between them are the Mahalanobis distances
    w = torch.linalg.solve_triangular(chol, z[:, :pc].transpose(1, 2), upper=False)
    w = w.transpose(1, 2)
    iu = torch.triu_indices(pc, pc, offset=1, device=z.device)
    diff = w[:, iu[0]] - w[:, iu[1]]
    d = diff.pow(2).sum(-1).add(1e-12).sqrt() / np.sqrt(k)
    if as_numpy:
        return d.numpy().astype(np.float32)
    return d


def functional_features(bank: Any, probes: np.ndarray) -> np.ndarray:
    """``[M, P*D + P_c(P_c-1)/2]``: reconstructions of the probes, then whitened code distances.

    ``bank`` may be an :class:`~evosim.train.AEBank` or an :class:`~evosim.train.AEBankSet`
    of several architectures: both blocks are defined whatever a member's architecture
    (code distances are normalised by the code size, see :func:`whitened_code_distances`).
    """
    recon = _numpy(bank.reconstruct_all(probes)).astype(np.float32)
    m = recon.shape[0]
    dist = np.empty((m, _n_pairs(len(probes))), dtype=np.float32)
    for g, group in enumerate(bank.groups):
        members = np.asarray(bank.group_members(g))
        codes = _numpy(group.encode_all(probes)).astype(np.float64)
        dist[members] = whitened_code_distances(codes)
    return np.concatenate([recon.reshape(m, -1), dist], axis=1).astype(np.float32)


def _n_pairs(p: int) -> int:
    pc = min(p, CODE_PROBES)
    return pc * (pc - 1) // 2


# ---------------------------------------------------------------------------- the fitted map


@dataclass
class RepresentationMap:
    """A fitted AE -> vector map: kind, probes or alignment reference, and standardisation.

    Fit once on a bank (:meth:`fit`), then :meth:`transform` any bank of the same
    architecture into the same coordinates, and :meth:`to_params` standardised
    coordinates back into stacked parameters (``raw`` and ``aligned`` only).
    """

    kind: str
    shapes: dict[str, tuple[int, ...]]
    mean: np.ndarray
    scale: np.ndarray
    probes: np.ndarray | None = None
    reference: dict[str, np.ndarray] | None = None
    reference_index: int | None = None
    seed: int = 0
    n_recon_features: int = 0
    standardize: str = "block"

    def blocks(self) -> list[slice]:
        """Feature blocks scaled together by ``standardize="block"``.

        One block per parameter tensor (``raw``/``aligned``); for ``functional`` the
        probe reconstructions and the code distances.
        """
        if self.kind == "functional":
            n = int(self.mean.shape[0]) if self.mean.size else None
            return [slice(0, self.n_recon_features), slice(self.n_recon_features, n)]
        out, start = [], 0
        for shape in self.shapes.values():
            size = int(np.prod(shape))
            out.append(slice(start, start + size))
            start += size
        return out

    @classmethod
    def fit(
        cls,
        bank: Any,
        kind: str,
        *,
        probes: np.ndarray | None = None,
        n_probes: int = 256,
        off_manifold_fraction: float = 0.25,
        seed: int = 0,
        standardize: str = "block",
    ) -> RepresentationMap:
        """Choose the reference (``aligned``) or probes (``functional``) and the standardisation."""
        return cls.fit_transform(
            bank,
            kind,
            probes=probes,
            n_probes=n_probes,
            off_manifold_fraction=off_manifold_fraction,
            seed=seed,
            standardize=standardize,
        )[0]

    @classmethod
    def fit_transform(
        cls,
        bank: Any,
        kind: str,
        *,
        probes: np.ndarray | None = None,
        n_probes: int = 256,
        off_manifold_fraction: float = 0.25,
        seed: int = 0,
        standardize: str = "block",
    ) -> tuple[RepresentationMap, np.ndarray]:
        """:meth:`fit`, also returning the standardised coordinates ``[M, F]`` of the bank."""
        if kind not in KINDS:
            raise ValueError(f"representation must be one of {KINDS}, got {kind!r}")
        if kind != "functional" and getattr(bank, "is_mixed", False):
            raise ScenarioError(
                f"meta.representation: {kind} reads weights, which need every species to share "
                "one AE architecture; this world has several (use functional)"
            )
        shapes = (
            {k: tuple(_numpy(v).shape[1:]) for k, v in bank.params.items()}
            if hasattr(bank, "params")
            else {}
        )
        rep = cls(kind=kind, shapes=shapes, mean=np.zeros(0), scale=np.zeros(0), seed=seed)
        if kind == "aligned":
            flat = flatten_params(bank.params)
            rep.reference_index = medoid(flat)
            rep.reference = {
                k: _numpy(v)[rep.reference_index].copy() for k, v in bank.params.items()
            }
        elif kind == "functional":
            if probes is None:
                probes = make_probes(bank, n_probes, off_manifold_fraction, seed)
            rep.probes = np.asarray(probes, dtype=np.float32)
            rep.n_recon_features = int(rep.probes.size)
        if standardize not in ("block", "feature"):
            raise ValueError(f"standardize must be 'block' or 'feature', got {standardize!r}")
        x = rep.features(bank)
        rep.standardize = standardize
        rep.mean = x.mean(axis=0).astype(np.float32)
        sd = x.std(axis=0).astype(np.float64)
        if standardize == "feature":
            # A feature that no member varies in carries nothing; leave it at 0 rather than
            # divide by ~0 and blow rounding noise up to unit variance.
            floor = 1e-6 * max(float(sd.max(initial=0.0)), 1e-12)
            scale = np.where(sd > floor, sd, 1.0)
        else:
            scale = np.ones_like(sd)
            for block in rep.blocks():
                rms = float(np.sqrt(np.mean(sd[block] ** 2)))
                scale[block] = rms if rms > 1e-12 else 1.0
        rep.scale = scale.astype(np.float32)
        return rep, ((x - rep.mean) / rep.scale).astype(np.float32)

    def features(self, bank: Any) -> np.ndarray:
        """Unstandardised features ``[M, F]`` of a bank."""
        if self.kind == "raw":
            return flatten_params(bank.params)
        if self.kind == "aligned":
            assert self.reference is not None
            return flatten_params(align_params(bank.params, self.reference, seed=self.seed))
        assert self.probes is not None
        return functional_features(bank, self.probes)

    def transform(self, bank: Any) -> np.ndarray:
        """Standardised coordinates ``[M, F]`` float32 of a bank."""
        x = self.features(bank)
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"bank gives {x.shape[1]} features, the map was fitted on {self.mean.shape[0]}: "
                "a different AE architecture?"
            )
        return ((x - self.mean) / self.scale).astype(np.float32)

    def inverse(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Standardised coordinates -> unstandardised features (tensors stay tensors)."""
        if isinstance(x, torch.Tensor):
            mean = torch.as_tensor(self.mean, device=x.device, dtype=x.dtype)
            scale = torch.as_tensor(self.scale, device=x.device, dtype=x.dtype)
            return x * scale + mean
        return np.asarray(x) * self.scale + self.mean

    def to_params(self, x: np.ndarray | torch.Tensor) -> dict[str, Any]:
        """Standardised coordinates ``[n, F]`` -> stacked parameters ``{name: [n, ...]}``."""
        if self.kind == "functional":
            raise ValueError(
                "a functional representation holds probe outputs, not weights: "
                "it cannot be turned back into parameters"
            )
        return unflatten_params(self.inverse(x), self.shapes)

    def state(self) -> dict[str, Any]:
        """Tensors and plain data for saving (``weights_only``-loadable; see :meth:`from_state`)."""

        def t(x: Any) -> torch.Tensor | None:
            return None if x is None else torch.as_tensor(np.asarray(x))

        return {
            "kind": self.kind,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "mean": t(self.mean),
            "scale": t(self.scale),
            "probes": t(self.probes),
            "reference": None
            if self.reference is None
            else {k: t(v) for k, v in self.reference.items()},
            "reference_index": self.reference_index,
            "seed": int(self.seed),
            "n_recon_features": int(self.n_recon_features),
            "standardize": self.standardize,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RepresentationMap:
        """Inverse of :meth:`state`."""

        def a(x: Any) -> np.ndarray | None:
            return None if x is None else _numpy(x).copy()

        s = dict(state)
        s["shapes"] = {k: tuple(v) for k, v in s["shapes"].items()}
        for key in ("mean", "scale", "probes"):
            s[key] = a(s[key])
        if s["reference"] is not None:
            s["reference"] = {k: a(v) for k, v in s["reference"].items()}
        return cls(**s)


#: Frames of matrices with at most this many rows or columns use a full SVD.
EXACT_FRAME_UP_TO = 1024
#: Power iterations of the randomised frame above that size.
FRAME_POWER_ITERATIONS = 4


def _top_singular(a: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading singular values ``[l]`` and right vectors ``[l, F]`` of ``a``, ``l >= k``.

    Randomised subspace iteration with re-orthonormalisation after every product, which
    keeps the small singular directions from being lost to rounding.
    """
    width = min(2 * k, *a.shape)
    gen = torch.Generator().manual_seed(int(seed))
    omega = torch.randn(a.shape[1], width, generator=gen, dtype=a.dtype)
    q = torch.linalg.qr(a @ omega).Q
    for _ in range(FRAME_POWER_ITERATIONS):
        q = torch.linalg.qr(a.T @ q).Q
        q = torch.linalg.qr(a @ q).Q
    _, sv, vt = torch.linalg.svd(q.T @ a, full_matrices=False)
    return sv, vt


@dataclass
class Frame:
    """Principal-axis coordinates of a representation: ``c = (x - mean) V / scale``.

    The M training representations span at most M - 1 dimensions, so rotating them onto
    their principal axes loses nothing for them (and projects new ones onto that span),
    while the encoder's first layer shrinks from F inputs to at most ``max_components``.
    One global ``scale`` makes the coordinates unit-RMS without changing their geometry.
    """

    mean: torch.Tensor  # [F]
    basis: torch.Tensor  # [F, r]
    scale: float

    @classmethod
    def fit(cls, x: np.ndarray, *, max_components: int = 256, seed: int = 0) -> Frame:
        """The frame of rows ``x [M, F]``.

        Up to :data:`EXACT_FRAME_UP_TO` rows or columns the axes come from a full SVD. Above,
        a full SVD grows as M F min(M, F) (about 7 minutes on one core at 10,000 AEs of
        9,320 features), so the top ``max_components`` axes come from randomised subspace
        iteration (Halko, Martinsson and Tropp 2011, algorithm 4.4) with as many extra
        directions as kept ones and :data:`FRAME_POWER_ITERATIONS` iterations, seeded by
        ``seed``: its subspace keeps the exact one's variance to within 1e-6 (tested).
        """
        t = torch.as_tensor(x, dtype=torch.float64)
        mean = t.mean(dim=0)
        centred = t - mean
        del t
        if min(centred.shape) <= EXACT_FRAME_UP_TO:
            _, sv, vt = torch.linalg.svd(centred, full_matrices=False)
        else:
            sv, vt = _top_singular(centred, max_components, seed)
        keep = int((sv > 1e-6 * sv.max().clamp_min(1e-300)).sum().clamp_min(1))
        keep = min(keep, max_components)
        basis = vt[:keep].T
        coords = centred @ basis
        scale = float(coords.pow(2).mean().sqrt().clamp_min(1e-12))
        return cls(mean.float(), basis.float().contiguous(), scale)

    @property
    def dim(self) -> int:
        """r, the number of coordinates."""
        return int(self.basis.shape[1])

    def to(self, device: torch.device) -> Frame:
        return Frame(self.mean.to(device), self.basis.to(device), self.scale)

    def coords(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates ``[n, r]`` of representations ``[n, F]`` (differentiable)."""
        return (x - self.mean) @ self.basis / self.scale

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean.cpu(), "basis": self.basis.cpu(), "scale": float(self.scale)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Frame:
        return cls(state["mean"].float(), state["basis"].float(), float(state["scale"]))


def represent(
    bank: Any,
    kind: str,
    *,
    probes: np.ndarray | None = None,
    seed: int = 0,
    n_probes: int = 256,
    off_manifold_fraction: float = 0.25,
    standardize: str = "block",
) -> np.ndarray:
    """Standardised representation ``[M, F]`` of every member of a bank.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank`.
    kind
        ``raw``, ``aligned`` or ``functional`` (see the module docstring).
    probes
        ``[P, D]`` probe inputs for ``functional``; drawn by :func:`make_probes` if None.
    seed
        Seeds the probes and the alignment's layer order.
    n_probes, off_manifold_fraction
        Passed to :func:`make_probes` when ``probes`` is None.
    standardize
        ``block`` (default): every feature centred over the members, and each block
        (a parameter tensor; or the probe reconstructions, and the code distances)
        divided by its root-mean-square standard deviation, so blocks have unit average
        variance per feature but features keep their relative spread. ``feature``:
        z-score every feature (features no member varies in are left at 0). Per-feature
        z-scores blow up features that barely vary (weights near their shared
        initialisation, probe outputs every AE agrees on) to the weight of informative
        ones; on quickstart they cost about 0.1 of cophenetic Spearman.

    Returns
    -------
    np.ndarray
        ``[M, F]`` float32. Use :class:`RepresentationMap` to keep the standardisation.
    """
    return RepresentationMap.fit_transform(
        bank,
        kind,
        probes=probes,
        n_probes=n_probes,
        off_manifold_fraction=off_manifold_fraction,
        seed=seed,
        standardize=standardize,
    )[1]
