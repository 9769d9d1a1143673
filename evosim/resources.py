"""How much memory and disk a scenario needs, estimated before anything is allocated.

``evosim validate`` and ``evosim run`` call :func:`check_resources`, which refuses a
scenario that cannot fit on this machine (``--force-size`` overrides), so that a typo
such as ``species.instances: 1000000000`` is a one-line error naming the estimate
instead of a ``MemoryError`` minutes later.

The estimate is deliberately simple arithmetic on the scenario (no tree is grown, no
array allocated): the bytes of each stage's large arrays, with the arrays that live
on into later stages counted there too. It is an order-of-magnitude guide, meant to
catch runs that are far too large, not to predict peak memory to the megabyte.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from evosim.errors import ResourceError
from evosim.scenario import Scenario

__all__ = [
    "ResourceEstimate",
    "available_disk",
    "check_resources",
    "estimate_resources",
    "machine_memory",
]

log = logging.getLogger(__name__)

#: Bytes per tree node (networkx dictionaries, names, the Phylogeny's index arrays).
NODE_BYTES = 1_200
#: Square [S, S] float64 matrices alive at once in the analysis (method and baseline
#: distances, true distances, tree inference and Mantel working copies, for the
#: ``SCORING_THREADS`` methods scored at once). Measured peak at 10,000 species: 17.7 GiB.
ANALYSIS_MATRICES = 22
#: The interpreter with torch, numpy and matplotlib loaded, before any data.
PROCESS_BYTES = 800 << 20
#: Refuse when the estimate exceeds this share of the machine's memory.
MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class ResourceEstimate:
    """Estimated bytes a scenario needs.

    Attributes
    ----------
    stages
        Stage -> peak bytes of memory while it runs (earlier stages' data included).
    disk
        Bytes the run directory will hold.
    """

    stages: dict[str, int]
    disk: int

    @property
    def memory(self) -> int:
        """The largest stage's memory."""
        return max(self.stages.values())

    @property
    def largest_stage(self) -> str:
        """The stage that needs the most memory."""
        return max(self.stages, key=self.stages.__getitem__)


def _n_species(scenario: Scenario) -> int:
    return scenario.species_count()


def _input_dim(scenario: Scenario) -> int:
    sp = scenario.species
    if sp.family == "circles":
        return 2
    if sp.family == "outline":
        return 2 * sp.outline_points
    return sp.ambient_dim


def _ae_params(widths_in: int, hidden: list[int], latent: int, variational: bool) -> int:
    enc = [widths_in, *hidden, 2 * latent if variational else latent]
    dec = [latent, *reversed(hidden), widths_in]
    return sum(a * b + b for w in (enc, dec) for a, b in zip(w[:-1], w[1:]))


def _training_bytes(scenario: Scenario, s: int, d: int) -> int:
    """Host bytes training needs beyond the simulated world: the trainer's own estimate."""
    ae = scenario.autoencoder
    n = scenario.species.instances
    try:
        from evosim.train.resources import estimate_training_bytes
    except ImportError:  # a trainer without the whole-run estimate: one member's, per species
        from evosim.train.spec import AESpec
        from evosim.train.trainer import estimate_member_bytes

        spec = AESpec.from_config(ae, d)
        params = ae.replicates * s * spec.n_params * 4
        return 3 * params + int(estimate_member_bytes(spec, ae, n, ae.replicates)) * ae.replicates
    import torch

    cuda = ae.device == "cuda" or (ae.device == "auto" and torch.cuda.is_available())
    return int(estimate_training_bytes(ae, s, n, d, device="cuda" if cuda else "cpu"))


def estimate_resources(scenario: Scenario, *, detailed: bool = True) -> ResourceEstimate:
    """Estimate the memory of each stage of ``scenario`` and the disk its run needs.

    Parameters
    ----------
    scenario
        A validated scenario.
    detailed
        Count training with the trainer's own estimate (imports torch); ``False`` counts
        only the bank's parameters, for a quick lower bound.

    Returns
    -------
    ResourceEstimate
    """
    s = _n_species(scenario)
    tr, sp, ae, me = scenario.traits, scenario.species, scenario.autoencoder, scenario.meta
    d = _input_dim(scenario)
    r = ae.replicates
    members = s * r

    # --- simulate: the tree (extinct lineages included), every node's traits, instances
    lineages = s
    if scenario.tree.model == "birth_death":
        lineages = int(s / max(1e-9, 1.0 - scenario.tree.death_rate / scenario.tree.birth_rate))
    nodes = 2 * lineages
    tree = nodes * NODE_BYTES
    traits = nodes * (tr.dim * 8 + 112)
    if tr.model == "population":
        traits += nodes * tr.population.size * tr.dim * 8
    family = 0
    if sp.family == "development":
        hidden = sp.development_hidden
        family = 8 * ((tr.dim + sp.instance_latent) * hidden + hidden * d)
    instances = s * sp.instances * d * 4
    world = tree + traits + family + instances
    simulate = world + instances  # the compressed copy written to instances.npz

    # --- train: the bank's parameters (and a checkpoint copy), one member's working set
    params = _ae_params(d, list(ae.hidden), ae.latent, ae.variant == "variational")
    bank = members * params * 4
    train = world + (_training_bytes(scenario, s, d) if detailed else 3 * bank)

    # --- meta: each member's representation, a few working copies
    if me.representation == "functional":
        features = me.probes * d + (ae.latent + 1) * ae.latent
    else:
        features = params
    frame = min(members, 256)
    meta = world + bank + 4 * members * features * 4 + features * frame * 8

    # --- analysis: S x S matrices
    analysis = world + bank + ANALYSIS_MATRICES * s * s * 8

    disk = (
        instances
        + 2 * bank  # aes.pt and the trainer's checkpoints
        + members * features * 4
        + 2 * s * s * 20  # latent and true distance matrices as text
        + nodes * (tr.dim * 25 + 40)  # traits.csv
    )
    stages = {"simulate": simulate, "train": train, "meta": meta, "analyse": analysis}
    return ResourceEstimate(
        stages={k: int(v) + PROCESS_BYTES for k, v in stages.items()},
        disk=int(disk),
    )


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a lower cgroup limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 8 << 30
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def available_disk(path: str | Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def format_bytes(n: float) -> str:
    """``1.5 GiB`` and the like."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_resources(
    scenario: Scenario,
    *,
    out: str | Path | None = None,
    force: bool = False,
    memory: int | None = None,
) -> ResourceEstimate:
    """Refuse a scenario that cannot fit on this machine.

    Parameters
    ----------
    scenario
        A validated scenario.
    out
        The run directory, to check the disk too (``None``: memory only).
    force
        Only log what would have been refused (``--force-size``).
    memory
        The machine's memory in bytes (default :func:`machine_memory`).

    Returns
    -------
    ResourceEstimate

    Raises
    ------
    ResourceError
        The estimate exceeds the machine's memory (or the free disk under ``out``).
    """
    memory = machine_memory() if memory is None else memory
    # The quick lower bound refuses absurd sizes before torch is even imported.
    est = estimate_resources(scenario, detailed=False)
    if est.memory <= MEMORY_SHARE * memory:
        est = estimate_resources(scenario)
    log.info(
        "estimated peak memory %s (%s stage), run directory %s; this machine has %s",
        format_bytes(est.memory),
        est.largest_stage,
        format_bytes(est.disk),
        format_bytes(memory),
    )
    problems: list[ResourceError] = []
    if est.memory > MEMORY_SHARE * memory:
        problems.append(
            ResourceError(
                f"scenario too large: the {est.largest_stage} stage needs about "
                f"{format_bytes(est.memory)} of memory and this machine has "
                f"{format_bytes(memory)}",
                hint="make the scenario smaller (species, instances, dimensions, widths), "
                "or pass --force-size to try anyway",
            )
        )
    if out is not None:
        free = available_disk(out)
        if est.disk > free:
            problems.append(
                ResourceError(
                    f"scenario too large: the run directory needs about "
                    f"{format_bytes(est.disk)} and {out} has {format_bytes(free)} free",
                    hint="free disk space or choose another --out, or pass --force-size",
                )
            )
    if problems and not force:
        raise problems[0]
    for problem in problems:
        log.warning("--force-size: going ahead although %s", problem.message)
    return est
