"""The analysis result (:class:`Report`) and its files in a run directory."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evosim import runio
from evosim.analysis.metrics import METRICS

__all__ = ["Report", "plot_report"]

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
    "random": "random trees",
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


@dataclass
class Report:
    """What :func:`~evosim.analysis.analyse` found.

    Attributes
    ----------
    inferred_tree
        The tree inferred from the MAE's latent distances (a Phylogeny).
    metrics
        ``{metric: value}`` of the MAE (names in :data:`~evosim.analysis.metrics.METRICS`;
        ``triplet`` is ``None`` for unrooted NJ trees).
    baselines
        ``{baseline: {metric: value}}``.
    timings
        ``{stage: seconds}`` (``analysis`` filled here; the pipeline adds the others).
    support
        With replicates: ``{node: support}`` of the inferred tree's splits, and
        ``support_summary`` the mean support of true and of false splits.
    noise_floor
        With replicates: mean latent distance within vs between species.
    """

    inferred_tree: Any
    metrics: dict[str, float | None]
    baselines: dict[str, dict[str, float | None]]
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
    generative: dict[str, Any] = field(default_factory=dict)
    generative_figures: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ text

    def table(self) -> str:
        """Markdown table: the MAE and every baseline, one row each, every metric."""
        head = "| method | " + " | ".join(METRICS) + " |"
        rule = "|---|" + "---:|" * len(METRICS)
        rows = [head, rule]
        for name, m in [("mae", self.metrics), *self.baselines.items()]:
            if "not_applicable" in m:
                label = _LABELS.get(name, name)
                rows.append(f"| {label} | not applicable: {m['not_applicable']} |")
                continue
            cells = " | ".join(
                _fmt(m.get(k)) if k != "rf" or m.get(k) is None else f"{m[k]:.4g}" for k in METRICS
            )
            label = _LABELS.get(name, name)
            rows.append(f"| {'**' + label + '**' if name == 'mae' else label} | {cells} |")
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
                f"prior {me.get('prior')}, {self.meta_info.get('steps', me.get('steps'))} steps",
                f"- tree method: {self.method}",
                "",
            ]
        lines += [
            "## Recovery of the true tree",
            "",
            "Lower is better for rf, nrf, quartet, triplet; higher for the cophenetic "
            "correlations (method distances vs true patristic distances); mantel_p is the "
            "one-sided Mantel p-value. Topology scores are unrooted; triplet is n/a for "
            "unrooted (NJ) trees. `random` is the mean over random Yule trees.",
            "",
            self.table(),
            "",
        ]
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
        if self.generative:
            from evosim.analysis.generative import generative_markdown

            lines += generative_markdown(self.generative)
        if self.timings:
            lines += ["## Stage timings", "", "| stage | seconds |", "|---|---:|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in self.timings.items()]
            lines += [f"| total | {sum(self.timings.values()):.2f} |", ""]
        lines += [
            "## Figures",
            "",
            "![tanglegram](figures/tanglegram.png)",
            "![latent space](figures/latent_space.png)",
            "![latent vs patristic](figures/distance_scatter.png)",
            "![AE losses](figures/ae_losses.png)",
            "![MAE training](figures/mae_training.png)",
            "",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ files

    def metrics_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        out: dict[str, Any] = {"mae": self.metrics, "baselines": self.baselines}
        if self.support_summary:
            out["support"] = self.support_summary
        if self.noise_floor:
            out["noise_floor"] = self.noise_floor
        if self.generative:
            out["generative"] = self.generative
        # Wall times and devices live in report.md: metrics.json is the same for the same seed.
        out["meta"] = {
            k: v
            for k, v in self.meta_info.items()
            if "curve" not in k and k not in {"seconds", "device"}
        }
        return _json_safe(out)

    def write(self, out_dir: str | Path, *, figures: bool = True) -> list[Path]:
        """Write the report files into ``out_dir`` (atomically, each).

        Files: ``inferred_tree.nwk`` (support values as internal labels when there are
        replicates), ``latents.csv`` (species, z_1..z_k), ``metrics.json``,
        ``report.md``, ``ae_losses.csv`` and ``mae_losses.csv`` (for redrawing), and
        ``figures/*.png`` (see :func:`plot_report`).
        """
        out = Path(out_dir)
        written = [
            runio.write_text(out / "inferred_tree.nwk", self.newick + "\n"),
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
        if self.generative_figures:
            from evosim.analysis.generative import figure_data_json

            written.append(
                runio.write_json(out / "generative.json", figure_data_json(self.generative_figures))
            )
        written.append(runio.write_text(out / "report.md", self.markdown()))
        if figures:
            written += self.draw(out / "figures")
        return written

    def draw(self, fig_dir: str | Path) -> list[Path]:
        """Draw the figures from the report's data."""
        return _draw(
            fig_dir,
            true_tree=self.true_tree,
            inferred_tree=self.inferred_tree,
            species=self.species,
            latents=self.latents,
            ae_losses=self.ae_losses,
            mae_losses=self.mae_losses,
            generative=self.generative_figures,
        )


def _draw(
    fig_dir: str | Path,
    *,
    true_tree: Any,
    inferred_tree: Any,
    species: list[str],
    latents: np.ndarray,
    ae_losses: dict[str, Any],
    mae_losses: dict[str, Any],
    generative: dict[str, Any] | None = None,
) -> list[Path]:
    from evosim import plot

    fig_dir = Path(fig_dir)
    paths = [
        plot.plot_tanglegram(true_tree, inferred_tree, fig_dir / "tanglegram.png"),
        plot.plot_latent_tree(latents, species, true_tree, fig_dir / "latent_space.png"),
        plot.plot_distance_scatter(latents, species, true_tree, fig_dir / "distance_scatter.png"),
    ]
    if ae_losses:
        paths.append(plot.plot_ae_losses(ae_losses, fig_dir / "ae_losses.png"))
    if mae_losses:
        paths.append(plot.plot_mae_training(mae_losses, fig_dir / "mae_training.png"))
    if generative:
        paths += plot.plot_generative_figures(generative, fig_dir)
    return paths


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def plot_report(run_dir: str | Path) -> list[Path]:
    """Redraw the analysis figures of a run directory from its files alone.

    Reads ``true_tree.nwk``, ``inferred_tree.nwk``, ``latents.csv`` and, if present,
    ``ae_losses.csv`` and ``mae_losses.csv``; writes ``figures/*.png``.
    """
    from evosim.phylo import Phylogeny

    run = Path(run_dir)
    for name in ("true_tree.nwk", "inferred_tree.nwk", "latents.csv"):
        if not (run / name).exists():
            raise FileNotFoundError(run / name)
    true_tree = Phylogeny.from_newick((run / "true_tree.nwk").read_text(encoding="utf-8"))
    inferred = Phylogeny.from_newick((run / "inferred_tree.nwk").read_text(encoding="utf-8"))
    rows = _read_csv(run / "latents.csv")
    species = [r["species"] for r in rows]
    cols = [c for c in rows[0] if c != "species"] if rows else []
    latents = np.asarray([[float(r[c]) for c in cols] for r in rows], dtype=np.float64)
    ae: dict[str, Any] = {}
    if (run / "ae_losses.csv").exists():
        a = _read_csv(run / "ae_losses.csv")
        ae = {
            "species": [r["species"] for r in a],
            "replicate": [int(r["replicate"]) for r in a],
            "train": np.asarray([float(r["train"]) for r in a]),
            "val": np.asarray([float(r["val"]) for r in a]),
        }
    mae: dict[str, Any] = {}
    if (run / "mae_losses.csv").exists():
        m = _read_csv(run / "mae_losses.csv")
        for name in ("train", "val"):
            sel = [r for r in m if r["curve"] == name]
            key = "step" if name == "train" else "val_step"
            mae[key] = np.asarray([int(r["step"]) for r in sel])
            mae[name] = np.asarray([float(r["loss"]) for r in sel])
    generative = (
        json.loads((run / "generative.json").read_text(encoding="utf-8"))
        if (run / "generative.json").exists()
        else None
    )
    return _draw(
        run / "figures",
        true_tree=true_tree,
        inferred_tree=inferred,
        species=species,
        latents=latents,
        ae_losses=ae,
        mae_losses=mae,
        generative=generative,
    )


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a run directory."""
    return json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))
