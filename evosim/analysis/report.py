"""The analysis result (:class:`Report`): its files in a run directory, and back.

``Report.write`` writes data only (trees, tables, matrices, ``metrics.json``,
``report.md``); the figures are drawn from the same data by :mod:`evosim.plot`
(``evosim.pipeline.draw_figures``). ``Report.from_run_dir`` reads a run directory back,
refusing files that are damaged or disagree with each other.

Files written (in the run directory)::

    inferred_tree.nwk       the MAE's tree (support values as internal labels with
                            replicates; starts with [&U] when unrooted, e.g. NJ)
    trees.nex               Nexus: the true, inferred and baseline trees, each marked
                            rooted [&R] or unrooted [&U]
    baselines/NAME.nwk      each baseline's inferred tree
    latents.csv             species, z_1..z_k: the code coordinates the tree is read
                            from (the first meta.tree_dims; by default the whole code)
    latent_distances.tsv    [S, S] Euclidean latent distances, labelled square matrix
    true_distances.tsv      [S, S] true patristic distances, labelled square matrix
    metrics.json            {"mae": {...}, "baselines": {...}, ..., "provenance": {...}}
    report.md               the table a person reads first
    archetypes.json         when the world has task optima or the MAE archetypes: the
                            data of the archetype figures (weights per species, positions,
                            decoded archetypes' instances); the scores are in metrics.json
    ae_losses.csv, mae_losses.csv   training curves (for redrawing the figures)

The ``.tsv`` matrices are tab-separated with the species names as the first row (after
an empty cell) and the first column: scikit-bio reads them with
``DistanceMatrix.read(path, format="lsmat")``, R with
``as.dist(read.delim(path, row.names = 1, check.names = FALSE))``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evosim import runio
from evosim.analysis.glossary import describe
from evosim.analysis.identification import identification_markdown, identification_summary
from evosim.analysis.metrics import METRICS
from evosim.errors import FileFormatError, ScenarioError

__all__ = ["Report", "read_lsmat"]

_LABELS = {
    "mae": "MAE",
    "traits": "traits (oracle)",
    "data_mean": "data mean + sd",
    "data_distribution": "data energy distance",
    "raw_weights": "raw weights",
    "weight_stats": "weight statistics",
    "functional": "functional (no MAE)",
    "pca": "PCA of MAE input",
    "untrained_mae": "untrained MAE",
    "mae_target": "MAE's distance target (no code)",
    "random": "random trees",
}

#: Figures drawn for a report (PNG, with an SVG of the same name beside each).
FIGURES = {
    "tanglegram": "true and inferred trees face to face",
    "latent_space": "the MAE latent space with the true tree",
    "distance_scatter": "latent vs patristic distance of every species pair",
    "ae_losses": "final loss of each species' AE",
    "mae_training": "MAE training",
}


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.1e}"
        return f"{v:.3f}"
    return str(v)


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


#: Rows of a distance matrix formatted at once when it is written.
_LSMAT_ROWS = 256


def write_lsmat(path: str | Path, labels: list[str], d: np.ndarray) -> Path:
    """Write a labelled square distance matrix, tab-separated (scikit-bio's ``lsmat`` format).

    Values are the shortest text that reads back to the same float (as ``repr``). The file
    is written atomically and streamed in blocks of rows: at 10,000 species it is about
    2 GB of text, which is never held in memory at once.
    """
    d = np.asarray(d, dtype=np.float64)
    for label in labels:
        if any(c in label for c in "\t\n\r"):
            raise ValueError(f"species name {label!r} cannot be written in a TSV matrix")

    def write(f: Any) -> None:
        f.write(("\t" + "\t".join(labels) + "\n").encode())
        for r0 in range(0, len(labels), _LSMAT_ROWS):
            # Python's float repr is the shortest round-trip text, and twice as fast as
            # NumPy's (about 0.6 us a value: a minute per 10,000-species matrix)
            rows = zip(labels[r0 : r0 + _LSMAT_ROWS], d[r0 : r0 + _LSMAT_ROWS].tolist())
            f.write(
                "".join(
                    f"{label}\t" + "\t".join(map(repr, row)) + "\n" for label, row in rows
                ).encode()
            )

    return runio.atomic_write(path, write)


def read_lsmat(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a matrix written by :meth:`Report.write` (``latent_distances.tsv``...).

    Raises
    ------
    FileFormatError
        The file is truncated or not a square labelled matrix (the message names it).
    """
    path = Path(path)
    text = runio.read_text(path)
    if not text.endswith("\n"):
        raise FileFormatError(f"{path}: ends mid-row (the file is truncated)")
    rows = text.rstrip("\n").split("\n")
    labels = rows[0].split("\t")[1:]
    if not labels or len(rows) != len(labels) + 1:
        raise FileFormatError(
            f"{path}: expected a header and {len(labels)} rows, got {len(rows) - 1} rows"
        )
    d = np.empty((len(labels), len(labels)))
    for i, row in enumerate(rows[1:]):
        cells = row.split("\t")
        if len(cells) != len(labels) + 1 or cells[0] != labels[i]:
            raise FileFormatError(f"{path}: line {i + 2} does not match the header")
        try:
            d[i] = [float(v) for v in cells[1:]]
        except ValueError:
            raise FileFormatError(f"{path}: line {i + 2} holds a value that is no number") from None
    return labels, d


def _nexus_label(label: str) -> str:
    """A label for Nexus: quoted when it has an underscore too (Nexus reads ``_`` as a blank)."""
    from evosim.phylo.newick import format_label

    text = format_label(label)
    return text if "_" not in text or text.startswith("'") else f"'{text}'"


def _nexus_newick(text: str) -> str:
    """A Newick tree rewritten with Nexus label quoting (no rooting comment)."""
    from evosim.phylo.newick import format_length, parse_newick

    p = parse_newick(text)
    children: list[list[int]] = [[] for _ in p.parent]
    for i, parent in enumerate(p.parent):
        if parent >= 0:
            children[parent].append(i)

    def suffix(i: int) -> str:
        out = _nexus_label(p.label[i]) if p.label[i] is not None else ""
        if p.length[i] is not None:
            out += ":" + format_length(p.length[i])
        return out

    # Iterative: deep (caterpillar) trees would overflow Python's recursion limit.
    parts: list[str] = []
    stack: list[tuple[int, int]] = [(0, 0)]
    while stack:
        node, k = stack.pop()
        kids = children[node]
        if not kids:
            parts.append(suffix(node))
        elif k == 0:
            parts.append("(")
            stack += [(node, 1), (kids[0], 0)]
        elif k < len(kids):
            parts.append(",")
            stack += [(node, k + 1), (kids[k], 0)]
        else:
            parts.append(")" + suffix(node))
    return "".join(parts) + ";"


def _nexus(taxa: list[str], trees: list[tuple[str, str, bool]]) -> str:
    """Nexus TAXA and TREES blocks; ``trees`` are (name, Newick, rooted)."""
    lines = [
        "#NEXUS",
        "",
        "BEGIN TAXA;",
        f"    DIMENSIONS NTAX={len(taxa)};",
        "    TAXLABELS " + " ".join(_nexus_label(t) for t in taxa) + ";",
        "END;",
        "",
        "BEGIN TREES;",
    ]
    for name, newick, rooted in trees:
        body = _nexus_newick(newick)
        lines.append(f"    TREE {_nexus_label(name)} = {'[&R]' if rooted else '[&U]'} {body}")
    lines += ["END;", ""]
    return "\n".join(lines)


def _not_applicable(m: Any) -> str | None:
    if isinstance(m, dict) and "not_applicable" in m:
        return str(m["not_applicable"])
    return None


@dataclass
class Report:
    """What :func:`~evosim.analysis.analyse` found.

    Attributes
    ----------
    inferred_tree
        The tree inferred from the MAE's latent distances (a Phylogeny).
    metrics
        ``{metric: value}`` of the MAE (names in :data:`~evosim.analysis.metrics.METRICS`,
        plus ``quartet_se`` where the quartet distance is sampled; ``triplet`` is
        ``None`` for unrooted NJ trees).
    baselines
        ``{baseline: {metric: value}}``, or ``{baseline: {"not_applicable": reason}}``.
    timings
        ``{stage: seconds}`` (filled by the pipeline).
    support
        With replicates: ``{node: support}`` of the inferred tree's splits, and
        ``support_summary`` the mean support of true and of false splits.
    noise_floor
        With replicates: mean latent distance within vs between species.
    latent_distances, true_distances
        ``[S, S]`` latent (Euclidean) and true patristic distances, ``species`` order.
    baseline_trees
        ``{baseline: Phylogeny}`` inferred from each baseline's distances.
    devices
        Stage -> the device it computed on.
    provenance
        The reproducible part of the run's provenance record (see
        :func:`evosim.provenance.stable_provenance`), written into ``metrics.json``.
    archetypes, archetype_figures
        When the world records task optima or the MAE has archetypes: the summary and
        scores (``metrics.json`` key ``archetypes``) and the figures' data
        (``archetypes.json``), see :func:`evosim.analysis.archetypes.archetype_analysis`.
    """

    inferred_tree: Any
    metrics: dict[str, float | None]
    baselines: dict[str, dict[str, Any]]
    species: list[str]
    latents: np.ndarray
    true_tree: Any
    method: str
    timings: dict[str, float] = field(default_factory=dict)
    support: dict[str, float] = field(default_factory=dict)
    support_summary: dict[str, float] = field(default_factory=dict)
    noise_floor: dict[str, float] = field(default_factory=dict)
    newick: str = ""
    latent_distances: np.ndarray | None = None
    true_distances: np.ndarray | None = None
    ae_losses: dict[str, Any] = field(default_factory=dict)
    mae_losses: dict[str, Any] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, Any] = field(default_factory=dict)
    baseline_trees: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    identification: dict[str, Any] = field(default_factory=dict)
    generative: dict[str, Any] = field(default_factory=dict)
    generative_figures: dict[str, Any] = field(default_factory=dict)
    archetypes: dict[str, Any] = field(default_factory=dict)
    archetype_figures: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ text

    def table(self) -> str:
        """Markdown table: the MAE and every baseline, one row each, every metric."""
        head = "| method | " + " | ".join(METRICS) + " |"
        rule = "|---|" + "---:|" * len(METRICS)
        rows = [head, rule]
        for name, m in [("mae", self.metrics), *self.baselines.items()]:
            label = _LABELS.get(name, name)
            label = f"**{label}**" if name == "mae" else label
            reason = _not_applicable(m)
            if reason is not None:
                rows.append(f"| {label} | not applicable: {reason} |" + " |" * (len(METRICS) - 1))
                continue
            cells = []
            for k in METRICS:
                v = m.get(k)
                if k == "rf" and v is not None:
                    cells.append(f"{v:.4g}")
                elif m.get(f"{k}_se") is not None:  # a sampled estimate, with its error
                    cells.append(f"{_fmt(v)} ± {_fmt(m[f'{k}_se'])}")
                else:
                    cells.append(_fmt(v))
            rows.append(f"| {label} | {' | '.join(cells)} |")
        return "\n".join(rows)

    def markdown(self) -> str:
        """The text of ``report.md``."""
        sc = self.scenario or {}
        lines = [f"# evosim report: {sc.get('name', 'scenario')}", ""]
        if sc:
            t, tr, sp, ae, me = (
                sc.get(k, {}) for k in ("tree", "traits", "species", "autoencoder", "meta")
            )
            lines += [
                "## Scenario",
                "",
                f"- seed {sc.get('seed')}; {len(self.species)} extant species",
                f"- tree: {t.get('model')} ({t.get('n_species')} species)",
                f"- traits: {tr.get('model')}, dim {tr.get('dim')}, sigma {tr.get('sigma')}",
                f"- species: {sp.get('family')}, {sp.get('instances')} instances of "
                f"dimension {sp.get('ambient_dim')}",
                f"- autoencoders: {ae.get('variant')}, hidden {ae.get('hidden')}, code "
                f"{ae.get('latent')}, {ae.get('steps')} steps, init {ae.get('init')}, "
                f"{ae.get('replicates')} replicate(s)",
                f"- MAE: {me.get('representation')} representation, code "
                f"{self.meta_info.get('latent', me.get('latent'))} (asked: {me.get('latent')}), "
                + (
                    f"tree from its first {me['tree_dims']} coordinates, "
                    if me.get("tree_dims")
                    else ""
                )
                + f"prior {me.get('prior')}, {self.meta_info.get('steps', me.get('steps'))} steps",
                f"- tree method: {self.method}",
                "",
            ]
        if self.devices or self.provenance:
            software = self.provenance.get("software", {})
            lines += ["## Provenance", ""]
            if software:
                lines.append(f"- {software.get('name')} {software.get('version')}")
            if self.devices:
                lines.append("- devices: " + ", ".join(f"{k} {v}" for k, v in self.devices.items()))
            lines += ["- full record: provenance.json", ""]
        rooted = self.method == "upgma"
        lines += [
            "## Recovery of the true tree",
            "",
            "Lower is better for rf, nrf, quartet, triplet; higher for the cophenetic "
            "correlations (inferred vs true tree's patristic distances, as `evosim compare`) "
            "and the distance correlations (method distances vs true patristic distances); "
            "mantel_p is the one-sided Mantel p-value of distance_pearson. Topology scores "
            "are unrooted; triplet is n/a for unrooted (NJ) trees. `random` is the "
            "expectation over random Yule trees. "
            + (
                "The inferred trees are rooted (UPGMA)."
                if rooted
                else "The inferred trees are unrooted (NJ)."
            ),
            "",
            self.table(),
            "",
            "Measures (the same names and definitions as `evosim compare` and metrics.json):",
            "",
        ]
        shown = [*METRICS, *(k for k in ("quartet_se", "triplet_se") if k in self.metrics)]
        lines += [f"- `{k}`: {describe(k)}" for k in shown]
        lines.append("")
        if self.support_summary:
            s = self.support_summary
            lines += [
                "## Bootstrap support over AE replicates",
                "",
                f"- mean support of true clades: {_fmt(s.get('mean_support_true'))} "
                f"({s.get('n_true')} clades)",
                f"- mean support of false clades: {_fmt(s.get('mean_support_false'))} "
                f"({s.get('n_false')} clades)",
                "",
            ]
        if self.noise_floor:
            n = self.noise_floor
            lines += [
                "## Noise floor",
                "",
                f"Mean latent distance between replicates of one species {_fmt(n['within'])}, "
                f"between species {_fmt(n['between'])} (ratio {_fmt(n['ratio'])}).",
                "",
            ]
        if self.identification:
            lines += [identification_markdown(self.identification)]
        if self.generative:
            from evosim.analysis.generative import generative_markdown

            lines += generative_markdown(self.generative)
        if self.archetypes:
            from evosim.analysis.archetypes import archetypes_markdown

            lines += archetypes_markdown(self.archetypes)
        if self.timings:
            lines += ["## Stage timings", "", "| stage | seconds |", "|---|---:|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in self.timings.items()]
            lines += [f"| total | {sum(self.timings.values()):.2f} |", ""]
        lines += ["## Figures", "", "Each also as SVG (same name, `.svg`).", ""]
        for name, title in FIGURES.items():
            if name == "ae_losses" and not self.ae_losses:
                continue
            if name == "mae_training" and not self.mae_losses:
                continue
            lines.append(f"![{title}](figures/{name}.png)")
        if self.archetype_figures:
            shown_figures = {"archetype_weights": "archetype weights per species"}
            if self.archetype_figures.get("optima") is not None:
                shown_figures["archetypes"] = "archetypes vs the true task optima"
            if self.archetype_figures.get("instances"):
                shown_figures["archetype_instances"] = "decoded archetypes' instances"
            lines += [f"![{t}](figures/{n}.png)" for n, t in shown_figures.items()]
        lines += [
            "",
            "## Files",
            "",
            "- trees: `inferred_tree.nwk`, `true_tree.nwk`, `baselines/NAME.nwk`; all in "
            "`trees.nex` (Nexus, rooting marked [&R]/[&U])",
            "- distance matrices: `latent_distances.tsv`, `true_distances.tsv` (labelled "
            'square TSV: scikit-bio `DistanceMatrix.read(path, format="lsmat")`, R '
            "`as.dist(read.delim(path, row.names = 1, check.names = FALSE))`)",
            "",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ files

    def metrics_json(self) -> dict[str, Any]:
        """The content of ``metrics.json`` (the same for the same scenario and seed)."""
        out: dict[str, Any] = {"mae": self.metrics, "baselines": self.baselines}
        if self.support_summary:
            out["support"] = self.support_summary
        if self.noise_floor:
            out["noise_floor"] = self.noise_floor
        if self.identification:
            out["identification"] = identification_summary(self.identification)
        if self.generative:
            out["generative"] = self.generative
        if self.archetypes:
            out["archetypes"] = self.archetypes
        # Wall times live in report.md and provenance.json, not here.
        out["meta"] = {
            k: v
            for k, v in self.meta_info.items()
            if "curve" not in k and k not in {"seconds", "device"}
        }
        if self.provenance:
            out["provenance"] = self.provenance
        return _json_safe(out)

    def _inferred_newick(self) -> str:
        text = self.newick or self.inferred_tree.to_newick()
        if not getattr(self.inferred_tree, "rooted", True) and not text.startswith("[&U]"):
            text = "[&U] " + text
        return text

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the report's data files into ``out_dir`` (atomically, each).

        See the module notes for the files. Figures are drawn separately, from the same
        data (``evosim.pipeline.draw_figures``).
        """
        out = Path(out_dir)
        inferred = self._inferred_newick()
        written = [
            runio.write_text(out / "inferred_tree.nwk", inferred + "\n"),
            runio.write_text(
                out / "latents.csv",
                _csv(
                    [["species", *[f"z_{i + 1}" for i in range(self.latents.shape[1])]]]
                    + [
                        [s, *[f"{v:.8g}" for v in row]]
                        for s, row in zip(self.species, self.latents)
                    ]
                ),
            ),
            runio.write_json(out / "metrics.json", self.metrics_json()),
        ]
        if self.latent_distances is not None:
            path = out / "latent_distances.tsv"
            written.append(write_lsmat(path, list(self.species), self.latent_distances))
        if self.true_distances is not None:
            path = out / "true_distances.tsv"
            written.append(write_lsmat(path, list(self.species), self.true_distances))
        nexus = [
            ("true", self.true_tree.to_newick(internal_labels=False), True),
            ("inferred", inferred, getattr(self.inferred_tree, "rooted", True)),
        ]
        for name, tree in self.baseline_trees.items():
            text = tree.to_newick(internal_labels=False)
            written.append(runio.write_text(out / "baselines" / f"{name}.nwk", text + "\n"))
            nexus.append((f"baseline_{name}", text, getattr(tree, "rooted", True)))
        written.append(runio.write_text(out / "trees.nex", _nexus(list(self.species), nexus)))
        if self.ae_losses:
            a = self.ae_losses
            rows = [["member", "species", "replicate", "train", "val"]]
            for i, (s, r) in enumerate(zip(a["species"], a["replicate"])):
                rows.append([i, s, r, f"{a['train'][i]:.8g}", f"{a['val'][i]:.8g}"])
            written.append(runio.write_text(out / "ae_losses.csv", _csv(rows)))
        if self.mae_losses:
            m = self.mae_losses
            rows = [["curve", "step", "loss"]]
            for name in ("train", "val"):
                steps = m.get("val_step" if name == "val" else "step", m.get("step", []))
                for st, v in zip(np.asarray(steps).tolist(), np.asarray(m.get(name, [])).tolist()):
                    rows.append([name, st, f"{v:.8g}"])
            written.append(runio.write_text(out / "mae_losses.csv", _csv(rows)))
        if self.identification:
            written.append(
                runio.write_json(out / "identification.json", _json_safe(self.identification))
            )
        if self.generative_figures:
            from evosim.analysis.generative import figure_data_json

            written.append(
                runio.write_json(out / "generative.json", figure_data_json(self.generative_figures))
            )
        if self.archetype_figures:
            from evosim.analysis.generative import figure_data_json

            written.append(
                runio.write_json(out / "archetypes.json", figure_data_json(self.archetype_figures))
            )
        written.append(runio.write_text(out / "report.md", self.markdown()))
        return written

    # ------------------------------------------------------------------ reading back

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> Report:
        """Read a run directory's report back from its files, checking they agree.

        Reads ``scenario.yaml``, ``true_tree.nwk``, ``inferred_tree.nwk``,
        ``latents.csv``, ``metrics.json`` and, when present, the distance matrices,
        the baseline trees and the loss tables.

        Raises
        ------
        RunDirectoryError
            A required file is missing.
        FileFormatError
            A file is damaged or truncated, or disagrees with another (different
            species, shapes); the message names the file.
        """
        run = Path(run_dir)
        scenario = _read_scenario(run / "scenario.yaml")
        true_tree = _read_tree(run / "true_tree.nwk")
        inferred = _read_tree(run / "inferred_tree.nwk")
        species, latents = _read_latents(run / "latents.csv")
        leaves = set(true_tree.leaves)
        _same_species(run / "latents.csv", species, run / "true_tree.nwk", leaves)
        _same_species(run / "inferred_tree.nwk", inferred.leaves, run / "true_tree.nwk", leaves)
        metrics = runio.read_json(run / "metrics.json")
        if not isinstance(metrics, dict) or not isinstance(metrics.get("mae"), dict):
            raise FileFormatError(f"{run / 'metrics.json'}: not an evosim metrics file")
        matrices: dict[str, np.ndarray] = {}
        for name in ("latent_distances", "true_distances"):
            path = run / f"{name}.tsv"
            if path.exists():
                labels, d = read_lsmat(path)
                if labels != species:
                    raise FileFormatError(
                        f"{path}: its species (rows) differ from those of {run / 'latents.csv'}"
                    )
                matrices[name] = d
        baseline_trees = {}
        if (run / "baselines").is_dir():
            for path in sorted((run / "baselines").glob("*.nwk")):
                tree = _read_tree(path)
                _same_species(path, tree.leaves, run / "true_tree.nwk", leaves)
                baseline_trees[path.stem] = tree
        ae_losses = _read_ae_losses(run / "ae_losses.csv", leaves)
        mae_losses = _read_mae_losses(run / "mae_losses.csv")
        return cls(
            inferred_tree=inferred,
            metrics=metrics["mae"],
            baselines=metrics.get("baselines", {}),
            species=species,
            latents=latents,
            true_tree=true_tree,
            method=scenario.analysis.method,
            support_summary=metrics.get("support", {}),
            noise_floor=metrics.get("noise_floor", {}),
            newick=runio.read_text(run / "inferred_tree.nwk").strip(),
            latent_distances=matrices.get("latent_distances"),
            true_distances=matrices.get("true_distances"),
            ae_losses=ae_losses,
            mae_losses=mae_losses,
            meta_info=metrics.get("meta", {}),
            scenario=scenario.to_dict(),
            baseline_trees=baseline_trees,
            provenance=metrics.get("provenance", {}),
            seed=scenario.seed,
            identification=runio.read_json(run / "identification.json")
            if (run / "identification.json").exists()
            else {},
            generative=metrics.get("generative", {}),
            generative_figures=runio.read_json(run / "generative.json")
            if (run / "generative.json").exists()
            else {},
            archetypes=metrics.get("archetypes", {}),
            archetype_figures=_read_archetype_figures(run / "archetypes.json", species),
        )


# ---------------------------------------------------------------------------- reading helpers


def _read_scenario(path: Path) -> Any:
    from evosim.scenario import parse_scenario

    try:
        return parse_scenario(runio.read_text(path), name=path.parent.name)
    except ScenarioError as exc:
        raise FileFormatError(f"{path}: {exc}") from None


def _read_tree(path: Path) -> Any:
    from evosim.phylo import Phylogeny

    try:
        return Phylogeny.from_newick(runio.read_text(path))
    except ValueError as exc:  # NewickError, duplicate leaves
        raise FileFormatError(f"{path}: {str(exc).splitlines()[0]}") from None


def _read_table(path: Path, columns: list[str] | None = None) -> list[list[str]]:
    """CSV rows (header first) of a file evosim wrote; refuses truncated files."""
    text = runio.read_text(path)
    if not text.endswith("\n"):
        raise FileFormatError(f"{path}: ends mid-row (the file is truncated)")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise FileFormatError(f"{path}: the file is empty")
    header = rows[0]
    if columns is not None and header[: len(columns)] != columns:
        raise FileFormatError(f"{path}: expected columns {','.join(columns)}, got {header}")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FileFormatError(
                f"{path}: line {i} has {len(row)} fields, the header {len(header)} "
                "(the file is damaged or truncated)"
            )
    return rows


def _floats(path: Path, line: int, cells: list[str]) -> list[float]:
    try:
        return [float(v) for v in cells]
    except ValueError:
        raise FileFormatError(f"{path}: line {line} holds a value that is no number") from None


def _read_latents(path: Path) -> tuple[list[str], np.ndarray]:
    rows = _read_table(path, ["species"])
    k = len(rows[0]) - 1
    if rows[0][1:] != [f"z_{i + 1}" for i in range(k)] or k == 0:
        raise FileFormatError(f"{path}: expected columns species,z_1..z_k, got {rows[0]}")
    species = [r[0] for r in rows[1:]]
    if len(set(species)) != len(species):
        raise FileFormatError(f"{path}: a species appears twice")
    values = [_floats(path, i, r[1:]) for i, r in enumerate(rows[1:], start=2)]
    return species, np.asarray(values, dtype=np.float64).reshape(len(species), k)


def _same_species(path: Path, names: Any, ref_path: Path, ref: set[str]) -> None:
    names = list(names)
    if set(names) != ref or len(names) != len(ref):
        missing = sorted(ref - set(names))[:3]
        extra = sorted(set(names) - ref)[:3]
        detail = "; ".join(
            part
            for part in (
                f"lacks {', '.join(missing)}" if missing else "",
                f"has {', '.join(extra)} too" if extra else "",
            )
            if part
        )
        raise FileFormatError(
            f"{path}: {len(names)} species, but {ref_path.name} has {len(ref)}"
            + (f" ({detail})" if detail else ""),
            hint="the run's files disagree: rerun the analysis, or the whole run",
        )


def _read_archetype_figures(path: Path, species: list[str]) -> dict[str, Any]:
    """``archetypes.json``'s figure data, checked against the run's species and itself."""
    if not path.exists():
        return {}
    data = runio.read_json(path)
    if not isinstance(data, dict) or "weights" not in data:
        raise FileFormatError(f"{path}: not an evosim archetypes file")
    if set(data.get("species", [])) != set(species):
        raise FileFormatError(f"{path}: its species differ from those of latents.csv")
    try:
        w = np.asarray(data["weights"], dtype=np.float64)
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: its weights are not a matrix of numbers") from None
    if w.ndim != 2 or len(w) != len(species):
        raise FileFormatError(f"{path}: weights must have one row per species ({len(species)})")
    return data


def _read_ae_losses(path: Path, species: set[str]) -> dict[str, Any]:
    if not path.exists():
        return {}
    rows = _read_table(path, ["member", "species", "replicate", "train", "val"])
    names = [r[1] for r in rows[1:]]
    if set(names) != species:
        raise FileFormatError(f"{path}: its species differ from those of true_tree.nwk")
    values = [_floats(path, i, [r[0], r[2], r[3], r[4]]) for i, r in enumerate(rows[1:], 2)]
    arr = np.asarray(values, dtype=np.float64).reshape(len(names), 4)
    return {
        "species": names,
        "replicate": arr[:, 1].astype(int).tolist(),
        "train": arr[:, 2],
        "val": arr[:, 3],
    }


def _read_mae_losses(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    rows = _read_table(path, ["curve", "step", "loss"])
    out: dict[str, Any] = {}
    for name, key in (("train", "step"), ("val", "val_step")):
        sel = [(i, r) for i, r in enumerate(rows[1:], start=2) if r[0] == name]
        vals = [_floats(path, i, r[1:]) for i, r in sel]
        arr = np.asarray(vals, dtype=np.float64).reshape(len(sel), 2)
        out[key] = arr[:, 0].astype(int)
        out[name] = arr[:, 1]
    return out
