"""Tree growth models: Yule, birth-death (extinct lineages kept), Kingman coalescent.

Conventions: the root is at time 0 and time grows toward the present. Extant leaves are
named ``s1..sN`` in preorder, extinct leaves ``x1..`` and internal nodes ``n1..`` (also in
preorder), so names are stable for a given tree. Children are ordered by creation time.

Conditioning on n extant species
--------------------------------
Yule and birth-death trees start from a single speciation at time 0 (the root, two
lineages) and are conditioned on having exactly ``n_species`` extant lineages at a
present drawn from a uniform prior on the tree's age -- the "general sampling approach"
(GSA) of Hartmann, Wong & Stadler (2010, Syst. Biol. 59:465). A simulated history
contributes every interval during which it has n lineages, weighted by the interval's
length. Because the holding times are exponential and independent of the sequence of
events, that weighting factorises into

1. a weight proportional to the number r of visits of the lineage count to n (applied by
   rejection: accept a history with probability r / R, where R bounds r except with
   probability < 1e-12), a uniformly chosen visit among them, and
2. a length-biased interval with a uniform point inside it, whose offset from the start
   of the interval is again ``Exp(n (birth + death))``.

So the present lies an ``Exp(n (birth + death))`` time after the last event kept: never at
an event, hence no zero-length terminal branch (DendroPy's simulator leaves a zero-length
cherry in every tree). For the Yule model r = 1 and this reduces to the usual "simulate
until n species, then wait for the next event that never comes". Histories that die out
before reaching n contribute nothing and are redrawn. Histories are followed until the
count reaches ``n + m``, where m is chosen so that returning to n is less likely than
1e-12.

All simulation is O(events): the lineage count path and every random draw are vectorised
with NumPy, and the tree is assembled once from flat arrays (alive lineages kept in a list
with swap-remove).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from evosim.phylo.tree import Phylogeny, _no_gc, _preorder_of_parents

if TYPE_CHECKING:
    from evosim.scenario import TreeConfig

__all__ = ["birth_death", "coalescent", "grow_tree", "yule"]

_EPS = 1e-12


def _check_n(n_species: int) -> int:
    if isinstance(n_species, bool) or int(n_species) != n_species or n_species < 2:
        raise ValueError(f"n_species must be an integer >= 2, got {n_species!r}")
    return int(n_species)


def _count_path(lam: float, mu: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Signed event sequence (+1 birth, -1 death) of a GSA-conditioned history.

    The returned events end at a visit of the lineage count to n (see module notes).
    """
    if n == 2 and mu == 0.0:
        return np.zeros(0, dtype=np.int8)
    if mu == 0.0:
        return np.ones(n - 2, dtype=np.int8)
    p_up = lam / (lam + mu)
    margin = max(1, math.ceil(math.log(_EPS) / math.log(mu / lam)))
    top = n + margin
    rho = 2.0 * mu / (lam + mu)  # bound on the chance of ever coming back to n from n
    r_cap = max(1, math.ceil(math.log(_EPS) / math.log(rho))) if rho < 1.0 else 10**9
    drift = (lam - mu) / (lam + mu)
    while True:
        chunks = []
        k = 2
        while True:
            size = int(min(1 << 24, 64 + 1.5 * (top - k) / drift))
            s = np.where(rng.random(size) < p_up, 1, -1).astype(np.int8)
            path = k + np.cumsum(s, dtype=np.int64)
            hit = np.flatnonzero((path <= 0) | (path >= top))
            if hit.size:
                chunks.append(s[: hit[0] + 1])
                break
            chunks.append(s)
            k = int(path[-1])
        steps = np.concatenate(chunks)
        after = 2 + np.cumsum(steps, dtype=np.int64)
        visits = np.flatnonzero(after == n)
        if n == 2:
            visits = np.concatenate([[-1], visits])
        r = visits.size
        if r == 0:
            continue  # died out before reaching n
        if rng.random() * r_cap >= r:
            continue  # rejection step for the weight r
        e = int(visits[rng.integers(r)])
        return steps[: e + 1]


def _assemble(
    parent: list[int] | np.ndarray,
    time: list[float] | np.ndarray,
    extinct: np.ndarray,
) -> Phylogeny:
    """Name nodes in preorder (s/x/n) and build the Phylogeny.

    ``parent`` may list nodes in any order; children are ordered by node index.
    """
    parent = np.asarray(parent, dtype=np.int64)
    time = np.asarray(time, dtype=float)
    n = parent.size
    pre_arr = _preorder_of_parents(parent)
    counts = np.bincount(parent[parent >= 0], minlength=n)
    pos = np.empty(n, dtype=np.int64)
    pos[pre_arr] = np.arange(n)
    is_leaf = counts[pre_arr] == 0
    ext = extinct[pre_arr]
    names = np.empty(n, dtype=object)
    for prefix, mask in (("s", is_leaf & ~ext), ("x", is_leaf & ext), ("n", ~is_leaf)):
        k = int(mask.sum())
        names[mask] = [f"{prefix}{i}" for i in range(1, k + 1)]
    par = parent[pre_arr]
    new_parent = np.where(par >= 0, pos[np.maximum(par, 0)], -1)
    return Phylogeny._from_parent_arrays(
        names.tolist(), new_parent, time[pre_arr], extinct=ext & is_leaf, in_preorder=True
    )


def birth_death(
    birth_rate: float, death_rate: float, n_species: int, *, rng: np.random.Generator
) -> Phylogeny:
    """A constant-rate birth-death tree with ``n_species`` extant leaves.

    Extinct lineages are kept as leaves with ``extinct=True`` (use
    :meth:`Phylogeny.extant_tree` for the reconstructed tree). Conditioning and the
    placement of the present follow the GSA (module notes): the root is the first
    speciation at time 0; the present follows the last event by ``Exp(n (b + d))``.

    Parameters
    ----------
    birth_rate, death_rate : float
        Per-lineage speciation and extinction rates, ``birth_rate > death_rate >= 0``.
    n_species : int
        Extant leaves at the present (>= 2).
    rng : numpy.random.Generator

    Returns
    -------
    Phylogeny

    References
    ----------
    Hartmann, Wong & Stadler (2010) Sampling trees from evolutionary models. Syst. Biol.
    Stadler (2011) Simulating trees with a fixed number of extant species. Syst. Biol.
    """
    n = _check_n(n_species)
    lam, mu = float(birth_rate), float(death_rate)
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"birth_rate must be > 0, got {birth_rate!r}")
    if not (math.isfinite(mu) and mu >= 0):
        raise ValueError(f"death_rate must be >= 0, got {death_rate!r}")
    if mu >= lam:
        raise ValueError(f"death_rate must be < birth_rate ({lam}), got {mu}")
    steps = _count_path(lam, mu, n, rng)
    E = steps.size
    k_before = (
        2 + np.concatenate([[0], np.cumsum(steps[:-1], dtype=np.int64)])
        if E
        else (np.zeros(0, dtype=np.int64))
    )
    total = lam + mu
    waits = rng.standard_exponential(E + 1) / (total * np.concatenate([k_before, [n]]))
    t_event = np.cumsum(waits[:E])
    present = float(t_event[-1] + waits[E]) if E else float(waits[0])
    pick = (rng.random(E) * k_before).astype(np.int64)
    with _no_gc():
        return _birth_death_tree(pick, steps > 0, t_event, present, n)


def _birth_death_tree(
    pick: np.ndarray, births: np.ndarray, t_event: np.ndarray, present: float, n: int
) -> Phylogeny:
    # node 0 is the root; a lineage is represented by its parent node
    parent: list[int] = [-1]
    time: list[float] = [0.0]
    dead: list[int] = []
    alive = [0, 0]
    for j, birth, t in zip(pick.tolist(), births.tolist(), t_event.tolist()):
        node = len(parent)
        parent.append(alive[j])
        time.append(t)
        if birth:
            alive[j] = node
            alive.append(node)
        else:
            dead.append(node)
            last = alive.pop()
            if j < len(alive):
                alive[j] = last
    parent.extend(alive)
    time.extend([present] * len(alive))
    assert len(alive) == n
    extinct = np.zeros(len(parent), dtype=bool)
    extinct[dead] = True
    return _assemble(parent, time, extinct)


def yule(birth_rate: float, n_species: int, *, rng: np.random.Generator) -> Phylogeny:
    """A pure-birth (Yule) tree with ``n_species`` leaves: :func:`birth_death` with no death.

    The root is the first speciation (time 0); the present follows the last speciation by
    ``Exp(n * birth_rate)`` (see the module notes).
    """
    return birth_death(birth_rate, 0.0, n_species, rng=rng)


def coalescent(n_species: int, population_size: float, *, rng: np.random.Generator) -> Phylogeny:
    """A Kingman coalescent tree of ``n_species`` contemporaneous leaves.

    Each pair of lineages coalesces at rate ``1 / population_size``, so with k lineages the
    waiting time is ``Exp(k (k - 1) / (2 population_size))`` and
    ``E[TMRCA] = 2 population_size (1 - 1/n)``. The root is at time 0 and the leaves at
    ``TMRCA`` (the present); times are in the same units as ``population_size``.

    Parameters
    ----------
    n_species : int
    population_size : float
        Time scale (e.g. haploid population size in generations; 1 gives coalescent units).
    rng : numpy.random.Generator
    """
    n = _check_n(n_species)
    N = float(population_size)
    if not (math.isfinite(N) and N > 0):
        raise ValueError(f"population_size must be > 0, got {population_size!r}")
    ks = np.arange(n, 1, -1)
    waits = rng.standard_exponential(n - 1) * (2.0 * N / (ks * (ks - 1.0)))
    back = np.cumsum(waits)  # backward time of each coalescence
    tmrca = float(back[-1])
    u = rng.random((n - 1, 2))
    first = (u[:, 0] * ks).astype(np.int64)
    second = (u[:, 1] * (ks - 1)).astype(np.int64)
    second += second >= first
    with _no_gc():
        return _coalescent_tree(first, second, n, (tmrca - back).tolist(), tmrca)


def _coalescent_tree(
    first: np.ndarray, second: np.ndarray, n: int, internal_times: list[float], tmrca: float
) -> Phylogeny:
    parent = [-1] * (2 * n - 1)
    time = [tmrca] * n + internal_times
    lineages = list(range(n))
    node = n
    for i, j in zip(first.tolist(), second.tolist()):
        a, b = lineages[i], lineages[j]
        parent[a] = node
        parent[b] = node
        lineages[i] = node
        last = lineages.pop()
        if j < len(lineages):
            lineages[j] = last
        node += 1
    return _assemble(parent, time, np.zeros(2 * n - 1, dtype=bool))


def grow_tree(config: TreeConfig, rng: np.random.Generator) -> Phylogeny:
    """Grow the species tree described by a scenario's ``tree:`` section.

    ``model`` selects :func:`yule`, :func:`birth_death`, :func:`coalescent` or a fixed
    Newick tree (``config.newick``; its leaves are the species and ``n_species`` is not
    used).
    """
    model = config.model
    if model == "yule":
        return yule(config.birth_rate, config.n_species, rng=rng)
    if model == "birth_death":
        return birth_death(config.birth_rate, config.death_rate, config.n_species, rng=rng)
    if model == "coalescent":
        return coalescent(config.n_species, config.population_size, rng=rng)
    if model == "newick":
        if not config.newick:
            raise ValueError("tree.model is 'newick' but tree.newick is empty")
        return Phylogeny.from_newick(config.newick)
    raise ValueError(f"unknown tree model {model!r}")
