"""Scenario files: YAML in, a validated and typed :class:`Scenario` out.

Every field has a default, so a scenario can be three lines. Validation is done by
pydantic; this module only turns its errors into one line that names the field path
and, where the YAML has one, the line (``tree.birth_rate (line 4): must be > 0, got -1``).
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evosim.errors import ScenarioError

__all__ = [
    "AnalysisConfig",
    "ArchitectureConfig",
    "AutoencoderConfig",
    "BASELINE_NAMES",
    "DecodeArchitecture",
    "MetaConfig",
    "PopulationConfig",
    "Scenario",
    "ScenarioError",
    "SpeciesConfig",
    "TraitsConfig",
    "TreeConfig",
    "dump_scenario",
    "load_scenario",
    "parse_scenario",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TreeConfig(_Section):
    """How the species tree grows (``tree:``)."""

    model: Literal["yule", "birth_death", "coalescent", "newick"] = Field(
        "birth_death",
        description="how the tree grows: pure birth (yule), birth and death (birth_death), "
        "Kingman's coalescent, or a tree given in tree.newick",
    )
    n_species: int = Field(
        32, ge=2, le=10_000_000, description="extant species: the leaves to recover"
    )
    birth_rate: float = Field(
        1.0, gt=0, description="speciation rate per lineage per unit time (yule, birth_death)"
    )
    death_rate: float = Field(
        0.2, ge=0, description="extinction rate per lineage per unit time (birth_death)"
    )
    population_size: float = Field(
        1.0, gt=0, description="coalescent: effective population size (time scale)"
    )
    newick: str | None = Field(
        None,
        description="newick: the tree in Newick; its leaves (unique names) are the species "
        "and branch lengths are times",
    )

    @model_validator(mode="after")
    def _check(self) -> TreeConfig:
        if self.model == "birth_death" and self.death_rate >= self.birth_rate:
            raise _FieldError(
                "death_rate", f"must be < birth_rate ({self.birth_rate}), got {self.death_rate}"
            )
        if self.model == "newick" and not self.newick:
            raise _FieldError("newick", "is required when tree.model is newick")
        if self.newick:
            _check_newick(self.newick)
        return self


class PopulationConfig(_Section):
    """The population-genetic engine (``traits.population``, for ``traits.model: population``)."""

    size: int = Field(200, ge=2, description="individuals per population (per lineage)")
    generations_per_time: int = Field(
        100, ge=1, description="generations per unit of branch length"
    )
    founder_size: int = Field(
        50, ge=1, description="individuals founding each daughter population at a speciation"
    )
    mutation_sigma: float = Field(0.05, ge=0, description="sd of a mutation's effect on a trait")
    mutation_rate: float = Field(
        1.0, ge=0, le=1, description="probability that a gene mutates, per generation"
    )
    recombination: float = Field(
        0.0, ge=0, le=1, description="probability that a pair of offspring recombines"
    )
    fitness: Literal["neutral", "stabilizing"] = Field(
        "stabilizing", description="neutral (pure drift) or stabilizing selection to an optimum"
    )
    selection_strength: float = Field(
        0.5, ge=0, description="stabilizing: w(x) = exp(-strength ||x - optimum||^2 / 2)"
    )
    optimum_sigma: float = Field(
        1.0, ge=0, description="Brownian drift of the optimum: sd per unit sqrt-time per trait"
    )
    optimum_shift: float = Field(
        0.0, ge=0, description="sd of the optimum's jump in each daughter at a speciation"
    )
    selection: Literal["wright_fisher", "tournament"] = Field(
        "wright_fisher", description="fitness-proportional Wright-Fisher sampling or tournaments"
    )
    tournament_size: int = Field(2, ge=1, description="tournament selection: contestants")
    workers: int | None = Field(
        None, ge=1, description="processes evolving lineages in parallel; null: automatic"
    )
    engine: Literal["numpy", "deap"] = Field(
        "numpy", description="vectorised operators on numpy Generators, or DEAP's stock operators"
    )

    @model_validator(mode="after")
    def _check(self) -> PopulationConfig:
        if self.founder_size > self.size:
            raise _FieldError(
                "founder_size", f"must be <= size ({self.size}), got {self.founder_size}"
            )
        return self


class TraitsConfig(_Section):
    """How traits drift along the tree (``traits:``)."""

    model: Literal["brownian", "ou", "early_burst", "jumps", "population", "tradeoff"] = Field(
        "brownian",
        description="Brownian motion, Ornstein-Uhlenbeck (ou), early burst, Brownian motion "
        "with jumps, the population-genetic engine (traits.population), or selection toward "
        "the Pareto front of several tasks (tradeoff)",
    )
    dim: int = Field(8, ge=1, description="traits per species")
    sigma: float = Field(1.0, gt=0, description="rate: variance sigma^2 per unit time per trait")
    root: float | list[float] = Field(
        0.0, description="the root's traits: one number for all, or a list of dim numbers"
    )
    correlation: list[list[float]] | None = Field(
        None,
        description="dim x dim correlation matrix of the traits' changes; null: independent",
    )
    alpha: float = Field(0.5, gt=0, description="ou: pull toward theta per unit time")
    theta: float | list[float] = Field(
        0.0, description="ou: the optimum, one number or a list of dim numbers"
    )
    decay: float = Field(-1.0, lt=0, description="early burst: rate sigma^2 exp(decay t)")
    jump_probability: float = Field(
        0.5, ge=0, le=1, description="jumps: probability of a jump at the start of each branch"
    )
    jump_scale: float = Field(1.0, ge=0, description="jumps: sd of a jump in each trait")
    population: PopulationConfig = Field(
        default_factory=PopulationConfig,
        description="settings of the population engine (traits.model: population)",
    )
    # tradeoff: selection toward the Pareto front of several tasks (evosim.evolve.tradeoff)
    tasks: int = Field(
        3, ge=2, description="tradeoff: number of tasks, whose optima are the archetypes"
    )
    selection: float = Field(
        4.0, gt=0, description="tradeoff: pull toward the lineage's fitness peak per unit time"
    )
    task_spread: float = Field(
        3.0, gt=0, description="tradeoff: distance of each task optimum from traits.root"
    )
    weight_drift: float = Field(
        1.5,
        ge=0,
        description="tradeoff: drift of each lineage's task weights (log-weight sd per sqrt time)",
    )

    @model_validator(mode="after")
    def _check(self) -> TraitsConfig:
        if self.model == "tradeoff" and self.tasks > self.dim + 1:
            raise _FieldError(
                "tasks", f"must be <= dim + 1 = {self.dim + 1} for tradeoff, got {self.tasks}"
            )
        for name in ("root", "theta"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != self.dim:
                raise _FieldError(name, f"must have dim={self.dim} values, got {len(value)}")
        if self.correlation is not None:
            c = np.asarray(self.correlation, dtype=float)
            if c.shape != (self.dim, self.dim):
                raise _FieldError(
                    "correlation", f"must be a {self.dim}x{self.dim} matrix, got shape {c.shape}"
                )
            if not np.allclose(c, c.T):
                raise _FieldError("correlation", "must be symmetric")
            if not np.allclose(np.diag(c), 1.0):
                raise _FieldError("correlation", "must have ones on the diagonal")
            if np.linalg.eigvalsh(c).min() <= 1e-10:
                raise _FieldError("correlation", "must be positive definite")
        return self


class SpeciesConfig(_Section):
    """How a species' trait vector becomes a class of instances (``species:``)."""

    family: Literal["development", "circles", "outline"] = Field(
        "development",
        description="development: a fixed random genotype-to-phenotype network; circles: "
        "2-D points on circles; outline: 2-D closed shapes from Fourier harmonics",
    )
    instances: int = Field(512, ge=2, description="instances (individuals) per species")
    ambient_dim: int = Field(
        32, ge=1, description="development: D, the length of one instance vector"
    )
    individual_variation: float = Field(
        0.1, ge=0, description="sd of an individual's traits around its species' traits"
    )
    noise: float = Field(0.01, ge=0, description="observation noise sd on each coordinate")
    instance_latent: int = Field(
        1, ge=1, description="development: per-instance hidden variables (e.g. age, pose)"
    )
    development_hidden: int = Field(
        64, ge=1, description="development: hidden width of the genotype-to-phenotype network"
    )
    outline_points: int = Field(
        32, ge=4, description="outline: points along each outline (D = 2 x outline_points)"
    )


_Activation = Literal["relu", "tanh", "elu", "gelu", "softplus", "sigmoid"]
_Variant = Literal["plain", "denoising", "sparse", "contractive", "variational", "concrete", "mdl"]


class ArchitectureConfig(_Section):
    """One AE architecture of ``autoencoder.architectures``.

    A field left out takes the ``autoencoder`` section's value; everything else in that
    section (steps, learning rate, loss weights, ...) applies to every architecture.
    """

    hidden: list[int] | None = Field(
        None, description="encoder hidden widths (the decoder mirrors them); default: the section's"
    )
    latent: int | None = Field(None, ge=1, description="code size; default: the section's")
    activation: _Activation | None = Field(
        None, description="hidden-layer activation; default: the section's"
    )
    variant: _Variant | None = Field(None, description="AE variant; default: the section's")

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(w < 1 for w in v):
            raise ValueError(f"every width must be >= 1, got {v}")
        return v


class AutoencoderConfig(_Section):
    """One AE per species (``autoencoder:``)."""

    variant: _Variant = Field("plain", description="the kind of autoencoder every species gets")
    hidden: list[int] = Field(
        default_factory=lambda: [64], description="encoder hidden widths (the decoder mirrors)"
    )
    latent: int = Field(2, ge=1, description="code size of each species' AE")
    activation: _Activation = Field("elu", description="activation of the hidden layers")
    steps: int = Field(2000, ge=1, description="training steps (minibatches) per AE")
    batch_size: int = Field(128, ge=1, description="instances per minibatch")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of each species' instances held out for validation"
    )
    init: Literal["shared", "independent"] = Field(
        "shared",
        description="shared: every species' AE starts from the same weights; independent: "
        "each from its own",
    )
    replicates: int = Field(
        1, ge=1, description="AEs trained per species (enables bootstrap support)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the AEs train; auto: CUDA when present (--device overrides)"
    )
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        "fp32",
        description="fp32; tf32 (CUDA matrix products); bf16 (bfloat16 layers, float32 weights)",
    )
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the step; auto: on CUDA, and on CPU for long runs"
    )
    corruption: float = Field(0.1, ge=0, description="denoising: input noise std")
    sparsity: Literal["l1", "kl"] = Field(
        "l1", description="sparse: L1 on the code, or KL to sparsity_target"
    )
    sparsity_weight: float = Field(1e-3, ge=0, description="sparse: weight of the penalty")
    sparsity_target: float = Field(
        0.05, gt=0, lt=1, description="sparse (kl): target mean activation"
    )
    contractive_weight: float = Field(
        1e-3, ge=0, description="contractive: weight of the Jacobian penalty"
    )
    kl_weight: float = Field(1e-3, ge=0, description="variational: weight of the KL term")
    selected_features: int | None = Field(
        None,
        ge=1,
        description="concrete: input features the selector layer picks (its code); None = latent",
    )
    temperature_start: float = Field(
        10.0, gt=0, description="concrete: selector temperature at the first step"
    )
    temperature_end: float = Field(
        0.1, gt=0, description="concrete: temperature at the last step (annealed exponentially)"
    )
    duplicate_weight: float = Field(
        1.0, ge=0, description="concrete: penalty on two selector rows picking one feature"
    )
    rate_weight: float = Field(
        1e-3, ge=0, description="mdl: weight of the code's bits per instance against the MSE"
    )
    checkpoint_every: int = Field(
        500, ge=1, description="steps between training checkpoints (for --resume)"
    )
    chunk_size: int | None = Field(None, ge=1, description="species per chunk; None = automatic")
    architectures: list[ArchitectureConfig] = Field(
        default_factory=list,
        description="several AE architectures in one world (each species gets one); an "
        "entry's unset fields take this section's values; empty: every species uses this "
        "section's hidden, latent, activation and variant",
    )
    assign: Literal["random", "by_clade"] = Field(
        "random",
        description="how species get an architecture: random (seeded by the species name, "
        "independent of the tree) or by_clade (contiguous clades of the true tree share one)",
    )

    @model_validator(mode="after")
    def _resolve_architectures(self) -> AutoencoderConfig:
        # fill each entry's unset fields, so the resolved scenario states every architecture
        for arch in self.architectures:
            for name in ("hidden", "latent", "activation", "variant"):
                if getattr(arch, name) is None:
                    value = getattr(self, name)
                    setattr(arch, name, list(value) if name == "hidden" else value)
        return self

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_setting(cls, v: Any) -> Any:
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"must be true, false or 'auto', got {v!r}")

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 for w in v):
            raise ValueError(f"every width must be >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _check_temperatures(self) -> AutoencoderConfig:
        if self.temperature_end > self.temperature_start:
            raise _FieldError(
                "temperature_end",
                f"must be <= temperature_start ({self.temperature_start}), "
                f"got {self.temperature_end}",
            )
        return self


class DecodeArchitecture(_Section):
    """An AE architecture for the MAE's decoded AEs (``meta.decode_architecture``)."""

    hidden: list[int] = Field(
        default_factory=lambda: [64], description="encoder hidden widths; the decoder mirrors them"
    )
    latent: int = Field(2, ge=1, description="code size of the decoded AEs")
    activation: Literal["relu", "tanh", "elu", "gelu", "softplus", "sigmoid"] = Field(
        "elu", description="hidden-layer activation"
    )
    variant: Literal["plain", "denoising", "sparse", "contractive", "variational"] = Field(
        "plain", description="AE variant (only variational changes the parameter shapes)"
    )

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 for w in v):
            raise ValueError(f"every width must be >= 1, got {v}")
        return v


class MetaConfig(_Section):
    """The meta-autoencoder over the trained AEs (``meta:``)."""

    representation: Literal["raw", "aligned", "functional"] = Field(
        "functional",
        description="what the MAE reads of each AE: raw weights, weights aligned to a "
        "reference, or its outputs on shared probe inputs",
    )
    standardize: Literal["block", "feature"] = Field(
        "block", description="scale each block of features together, or z-score each feature"
    )
    latent: int | Literal["auto"] = Field(
        16,
        description="MAE code size, or auto (chosen by the decoding of held-out species). "
        "Larger codes decode better once codes are refined (meta.encode_steps): on 15 "
        "bundled scenarios (5 seeds), 64 decoded species left out of the fit at a "
        "geometric-mean MSE ratio of 3.37 against 4.70 with 16 (better on all 15), and "
        "the fitted species at 1.14 against 1.22; but the trees were a little worse (mean "
        "nRF +0.009, worse on 10 of 15) and on identify.yaml the codes "
        "lost the traits (ridge R^2 0.01 against 0.60), so 16 stays the default. At 512 "
        "species 64 also decoded better (fitted species 5.0 against 8.6 on large.yaml's "
        "world). meta.tree_dims 16 with 64 keeps the trees of 16 (see there)",
    )
    tree_dims: int | None = Field(
        None,
        ge=1,
        description="the leading coordinates of the code that the distance term shapes and "
        "that the analysis reads (the tree, trait recovery, bootstrap support, the latent "
        "figures); the rest of the code is left to the decoder. null: the whole code. "
        "With meta.latent 64, tree_dims 16 gives 64's decoding with 16's trees: on 15 "
        "bundled scenarios (5 seeds) against the default 16-number code, mean NJ nRF "
        "0.613 against 0.614 (better on 7, worse on 7; a whole code of 64 was +0.009), "
        "species left out of the fit decoded at a geometric-mean MSE ratio of 3.27 against "
        "4.44 (better on all 15) and the fitted ones at 1.14 against 1.22; but the traits "
        "read from the 16 coordinates were a little weaker (ridge R^2 0.639 against 0.660, "
        "lower on 12 of 15; meta.tail_dropout 0.5 gives most of them back). At most meta.latent; "
        "needs a numeric meta.latent, and not the archetypal prior (whose simplex is the "
        "whole code)",
    )
    tail_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="with meta.tree_dims below the code size: the share of members, each "
        "training step, that the decoder decodes from the tree coordinates alone (the rest "
        "of the code zeroed), so that those coordinates carry what the AEs do and not only "
        "their distances. With meta.latent 64 and tree_dims 16, 0.5 on 15 bundled "
        "scenarios (5 seeds, the full benchmark) against the default 16-number code: "
        "species left out of the fit decoded at a geometric-mean MSE ratio of 3.35 against "
        "4.70 (better on all 15), fitted ones at 1.23 against 1.22, mean nRF 0.617 against "
        "0.614 (tree target on 10 against 11), trait ridge R^2 0.657 against 0.674 (higher "
        "on 10 of 15; without dropout the traits read from the tree coordinates were "
        "weaker)",
    )
    prior: Literal["none", "variational", "archetypal"] = Field(
        "none",
        description="prior on the code: none, a Gaussian (variational), or Deep Archetypal "
        "Analysis (archetypal: every code a convex mixture of meta.archetypes fixed corners "
        "of a simplex; the code size is then meta.archetypes - 1)",
    )
    steps: int = Field(
        600,
        ge=1,
        description="passes over the members (a step is a minibatch of at most 64 members); "
        "above 256 members the passes shrink as 256 / members, so the optimiser takes as "
        "many steps as at 256 members and fitting time hardly grows with the species. Twice "
        "the default decodes the fitted species' AEs more closely (median MSE ratio 1.14 "
        "against 1.33 on quickstart), but not species left out of the fit, at twice the "
        "time. At 1,024-10,000 species twice the steps decode both 11-27% more closely, "
        "for about twice the fitting time",
    )
    encode_steps: int = Field(
        300,
        ge=0,
        description="when the MAE encodes an AE (species left out of its fit, any new "
        "bank), Adam steps that refine the encoder's one-pass guess through the fixed "
        "decoder, toward the code whose decoded AE best reproduces the AE (0: the "
        "encoder's guess alone). The training species keep the encoder's codes. On the 16 "
        "bundled scenarios, species left out of the fit decoded at a geometric-mean MSE "
        "ratio of 4.84 with 300 steps against 7.02 with the encoder alone; the codes "
        "settle within 100-300 steps from any start",
    )
    hidden: list[int] = Field(
        default_factory=lambda: [128], description="hidden widths of the MAE's encoder"
    )
    decoder_hidden: list[int] = Field(
        default_factory=lambda: [64],
        description="hidden widths of the hypernetwork that writes a decoded AE's parameters. "
        "Wider or deeper did not decode the species closer at 128 or 4,096 species "
        "([256], [1024], [128, 128] tried)",
    )
    decode_architecture: DecodeArchitecture | None = Field(
        None,
        description="architecture of decoded AEs; default: the one most species have",
    )
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    kl_weight: float = Field(1e-3, ge=0, description="variational prior: weight of the KL term")
    code_noise: float = Field(
        0.1,
        ge=0,
        description="sd of noise added to codes in training, relative to the codes' spread: "
        "the decoder must work around each species' code, not only at it",
    )
    probe_weight: float = Field(
        0.25, ge=0, description="weight of the shared probes in the behaviour loss"
    )
    law_weight: float = Field(
        0.1, ge=0, description="weight of the decoded AEs' code-law term (used by generate)"
    )
    cycle_weight: float = Field(
        10.0,
        ge=0,
        description="weight of encode-decode-re-encode consistency: the AE decoded from a "
        "code must be encoded back to it (functional and raw representations)",
    )
    contrastive_weight: float = Field(
        0.0, ge=0, description="weight of the contrastive loss pulling replicates together"
    )
    distance_weight: float = Field(
        100.0,
        ge=0,
        description="weight of the term that keeps pairwise distances of the codes like "
        "meta.distance_target's (0: off). The default holds the codes to the target's "
        "distances; at 1 the term barely moves them beside the behaviour loss",
    )
    distance_target: Literal["representation", "behaviour", "errors", "both"] = Field(
        "behaviour",
        description="distances the distance term keeps: behaviour: energy distances between "
        "where the members' AEs send the shared probes (each reconstructed twice), which "
        "compares AEs on their own manifolds; errors: the members' log reconstruction "
        "errors on the bank's pooled reference inputs, capped per input (meta.error_cap) "
        "and centred per member, which compares which data each AE models well; "
        "representation: the distances of what the MAE reads; or both (representation and "
        "behaviour), each scaled to unit root-mean-square distance. Behaviour is the "
        "default: over the 16 bundled scenarios it ties representation on trees (mean nRF "
        "0.635 against 0.640), more than halves the MAE's gap to the data where that gap "
        "was largest (outline, identify), and decodes held-out species slightly better, for "
        "about 17% more fitting time. Errors gave the MAE better trees on the bundled "
        "scenarios (32-128 species, 5 seeds: mean nRF 0.583 against 0.635, better on 12 of "
        "16), at a small cost in trait R^2 on almost all 16 (0.622 against 0.667; species "
        "left out of the fit decode alike once their codes are refined, meta.encode_steps, "
        "and 7% worse from the encoder's guess alone); but not on larger "
        "worlds: at 512 species the MAE's trees were worse with it (0.705 against 0.639 on "
        "large.yaml's world, 0.725 against 0.686 on many_species.yaml's), and at 1,024 "
        "species 0.736 against 0.639, so it is not the default",
    )
    error_cap: float = Field(
        0.25,
        gt=0,
        le=1,
        description="distance_target errors: on each reference input, the members' log "
        "errors above this quantile of all members' count as it (1: uncapped). How badly an "
        "AE extrapolates to data far from its own is mostly its own noise, and with many "
        "species most inputs are far from most AEs. With 0.25 the MAE's trees on the "
        "bundled scenarios were better "
        "than uncapped (mean nRF 0.583 against 0.602, better on 10 of 16), and held-out "
        "species decoded 2-9% worse than uncapped from the encoder's guess (on the 4 "
        "measured). From 512 species the codes could not keep the capped distances: their "
        "tree spreads over more dimensions than a 16-number code has (16-dimensional points "
        "fitted to them alone lost 0.04-0.09 nRF at 512 species, points fitted to the data's "
        "distances 0.01 on average), and uncapped gave better trees (0.664 against 0.705 at "
        "512 species of large.yaml's world)",
    )
    probes: int = Field(256, ge=1, description="shared probe inputs (functional)")
    off_manifold_fraction: float = Field(
        0.25, ge=0, le=1, description="share of probes drawn off the data (random directions)"
    )
    archetypes: int = Field(
        4,
        ge=2,
        description="archetypal prior: number of archetypes k; the code size is k - 1 (set "
        "one of meta.latent and meta.archetypes, the other follows)",
    )
    archetype_weight: float = Field(
        1.0,
        ge=0,
        description="archetypal prior: weight of the archetype loss, which keeps every "
        "archetype a convex mixture of the species' codes (on their hull)",
    )
    archetype_prior: Literal["gaussian", "dirichlet"] = Field(
        "gaussian",
        description="archetypal prior: the prior of the KL term, a standard normal "
        "(gaussian) or the Dirichlet-style prior (unit Gaussians around Dirichlet mixtures "
        "of the archetypes)",
    )
    dirichlet_concentration: float = Field(
        1.0, gt=0, description="archetypal prior, dirichlet: concentration of the Dirichlet"
    )
    side_information: str = Field(
        "none",
        description="a species-level variable the MAE learns to predict from its code (the "
        "side information of Deep AA): none, trait_<i> (the i-th true trait) or traits (all). "
        "It reads the TRUE traits: the MAE is then supervised by the truth, and its scores "
        "against the traits are no longer blind",
    )
    side_weight: float = Field(
        1.0, ge=0, description="side information: weight of its prediction loss"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the MAE trains; auto: CUDA when present (--device overrides)"
    )

    @field_validator("latent")
    @classmethod
    def _positive_latent(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 or 'auto', got {v}")
        return v

    @field_validator("side_information")
    @classmethod
    def _side_information_name(cls, v: str) -> str:
        if side_information_index(v) is None and v not in ("none", "traits"):
            raise ValueError(f"must be none, traits or trait_<i> (i >= 1), got {v!r}")
        return v

    @model_validator(mode="after")
    def _tree_dims_within_code(self) -> MetaConfig:
        if self.tail_dropout > 0 and (
            self.tree_dims is None
            or (isinstance(self.latent, int) and self.tree_dims >= self.latent)
        ):
            raise _FieldError(
                "tail_dropout",
                f"needs meta.tree_dims below meta.latent (the tail it drops), got "
                f"{self.tail_dropout} with tree_dims {self.tree_dims}",
            )
        if self.tree_dims is None:
            return self
        if self.latent == "auto":
            raise _FieldError("tree_dims", "needs a numeric meta.latent, not auto")
        if self.prior == "archetypal":
            raise _FieldError(
                "tree_dims", "must be null with prior archetypal (the simplex is the whole code)"
            )
        if self.tree_dims > int(self.latent):
            raise _FieldError(
                "tree_dims", f"must be <= meta.latent ({self.latent}), got {self.tree_dims}"
            )
        return self

    @model_validator(mode="after")
    def _archetypal_code_size(self) -> MetaConfig:
        # Deep AA's k archetypes are the corners of a regular simplex in a (k - 1)-dimensional
        # code: the one of latent and archetypes that was given sets the other. Written into
        # __dict__ (no re-validation, fields_set unchanged): the resolved scenario then states
        # both, consistently.
        if self.prior != "archetypal":
            return self
        given = self.model_fields_set
        if self.latent == "auto":
            raise _FieldError(
                "latent", "must be a number with prior archetypal (meta.archetypes - 1), not auto"
            )
        if "latent" in given and "archetypes" in given:
            if self.latent != self.archetypes - 1:
                raise _FieldError(
                    "latent",
                    f"must be meta.archetypes - 1 = {self.archetypes - 1} with prior "
                    f"archetypal, got {self.latent}",
                )
        elif "latent" in given:
            self.__dict__["archetypes"] = int(self.latent) + 1
        else:
            self.__dict__["latent"] = self.archetypes - 1
        return self


def side_information_index(name: str) -> int | None:
    """``i`` for ``trait_<i>`` (1-based, ``i >= 1``), else ``None``."""
    head, _, tail = str(name).partition("_")
    if head == "trait" and tail.isdigit() and int(tail) >= 1:
        return int(tail)
    return None


class AnalysisConfig(_Section):
    """Latent space -> tree -> scores (``analysis:``)."""

    method: Literal["nj", "upgma"] = Field(
        "nj",
        description="tree from distances: neighbour joining (unrooted) or UPGMA (rooted)",
    )
    baselines: list[str] | Literal["all"] = Field(
        "all", description="baselines scored beside the MAE: a list of names, or all"
    )
    mantel_permutations: int = Field(
        999, ge=0, description="permutations of the Mantel test (0: no p-value)"
    )
    random_trees: int = Field(
        100, ge=1, description="random trees averaged for the chance baseline"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where the analysis computes (energy distances, Mantel tests); auto: "
        "CUDA when present (--device overrides)",
    )

    generative: bool = Field(
        True,
        description="score the MAE's decoder: decoded-AE fidelity, trait recovery, "
        "interpolated ancestors (and a latent line for circles)",
    )
    generative_folds: int = Field(
        4,
        ge=0,
        description="folds over species for decoding species held out of the MAE's fit "
        "(the MAE is refitted once per fold; below 2 skips it)",
    )
    identification: bool | Literal["auto"] = Field(
        "auto",
        description="score the AE bank as a species identifier (accuracy, novelty, features); "
        "auto: when that costs at most a quarter of the AE training",
    )
    identification_specimens: int = Field(
        64, ge=1, description="identification: fresh test specimens per species"
    )
    identification_calibration: int = Field(
        32, ge=2, description="identification: fresh specimens per species to calibrate on"
    )
    identification_held_out: float = Field(
        0.25, ge=0, lt=1, description="identification: fraction of species held out for novelty"
    )

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, list):
            unknown = [b for b in v if b not in BASELINE_NAMES]
            if unknown:
                raise ValueError(
                    f"unknown baseline {unknown[0]!r}{_did_you_mean(unknown[0], BASELINE_NAMES)}"
                    f" (choose from {', '.join(BASELINE_NAMES)})"
                )
        return v

    @field_validator("identification", mode="before")
    @classmethod
    def _identification_setting(cls, v: Any) -> Any:
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"must be true, false or 'auto', got {v!r}")


class Scenario(_Section):
    """A whole evolution scenario. Sections mirror the pipeline stages."""

    name: str = Field("scenario", description="the scenario's name (default: the file's name)")
    seed: int = Field(
        default_factory=lambda: secrets.randbelow(2**31),
        ge=0,
        lt=2**63,
        description="seeds everything; when missing, drawn once and written into the run",
        json_schema_extra={"x-default": "drawn at random"},
    )
    tree: TreeConfig = Field(default_factory=TreeConfig, description="the species tree")
    traits: TraitsConfig = Field(
        default_factory=TraitsConfig, description="traits evolving along the tree"
    )
    species: SpeciesConfig = Field(
        default_factory=SpeciesConfig, description="from traits to each species' instances"
    )
    autoencoder: AutoencoderConfig = Field(
        default_factory=AutoencoderConfig, description="one autoencoder per species"
    )
    meta: MetaConfig = Field(
        default_factory=MetaConfig, description="the meta-autoencoder over the trained AEs"
    )
    analysis: AnalysisConfig = Field(
        default_factory=AnalysisConfig, description="inferred tree, scores and baselines"
    )

    @model_validator(mode="after")
    def _side_information_exists(self) -> Scenario:
        i = side_information_index(self.meta.side_information)
        if i is not None and i > self.traits.dim:
            raise _FieldError(
                "meta.side_information",
                f"trait_{i} does not exist: traits.dim is {self.traits.dim}",
            )
        return self

    def species_count(self) -> int:
        """The extant species the tree will have (a Newick tree's leaves, counted cheaply)."""
        if self.tree.model == "newick" and self.tree.newick:
            # Leaves are labels followed by , ) or ; : a cheap count without parsing.
            return max(2, self.tree.newick.count(",") + 1)
        return self.tree.n_species

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (every default filled in)."""
        return self.model_dump(mode="json")


#: Baseline names accepted by ``analysis.baselines`` (those of :mod:`evosim.analysis.baselines`).
BASELINE_NAMES = (
    "traits",
    "data_mean",
    "data_distribution",
    "raw_weights",
    "weight_stats",
    "functional",
    "pca",
    "untrained_mae",
    "mae_target",
    "random",
)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The field names of the section at ``loc`` (e.g. ``("tree",)``) of a Scenario."""
    model: Any = Scenario
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _check_newick(text: str) -> None:
    """Raise ``_FieldError("newick", ...)`` unless ``text`` is a tree with unique leaf names."""
    from evosim.phylo import Phylogeny

    try:
        tree = Phylogeny.from_newick(text)
    except ValueError as exc:  # NewickError, duplicate leaf names
        raise _FieldError("newick", str(exc).splitlines()[0]) from None
    if len(tree.leaves) < 2:
        raise _FieldError("newick", f"must have at least 2 leaves, got {len(tree.leaves)}")


class _FieldError(ValueError):
    """Raised inside a model validator to blame one field of that section."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# ---------------------------------------------------------------------------- YAML + errors


def _line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path in a YAML document to its 1-based line number."""
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}
_TYPES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        return f"must be {op} {ctx.get(key):g}, got {value!r}"
    if kind == "extra_forbidden":
        loc = error["loc"]
        hint = _did_you_mean(str(loc[-1]), _fields_at(loc[:-1]))
        section = ".".join(str(p) for p in loc[:-1])
        return f"unknown field{hint} (`evosim fields {section}` lists the fields)".replace(
            " ` lists", "` lists"
        )
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    if kind in _TYPES:
        return f"must be {_TYPES[kind]}, got {value!r}"
    if kind == "value_error":
        err = ctx.get("error")
        return str(err) if err is not None else error["msg"]
    return f"{error['msg'].rstrip('.')}, got {value!r}"


def _format_error(exc: ValidationError, lines: dict[tuple[str | int, ...], int]) -> str:
    # Literal/union errors come once per union member; blame the most specific one.
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc = tuple(
        p
        for p in error["loc"]
        if not (
            isinstance(p, str)
            and (
                "[" in p
                or p
                in {
                    "int",
                    "str",
                    "float",
                    "list[float]",
                    "list[list[float]]",
                    "none",
                    "bool",
                    "literal['auto']",
                    "list[str]",
                    "literal['all']",
                }
            )
        )
    )
    message = _describe(error)
    ctx_err = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _FieldError):
        loc = (*loc, ctx_err.field)
        message = ctx_err.message
    path = ".".join(str(p) for p in loc) or "scenario"
    line = None
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    where = f"{path} (line {line})" if line is not None else path
    return f"{where}: {message}"


def parse_scenario(text: str, *, name: str = "scenario") -> Scenario:
    """Parse and validate scenario YAML text.

    Parameters
    ----------
    text
        The YAML document.
    name
        Used when the document sets no ``name``.

    Returns
    -------
    Scenario
        Every field filled; a missing ``seed`` is drawn once and fixed.

    Raises
    ------
    ScenarioError
        One line naming the field path (and YAML line) that is wrong.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"scenario{where}: not valid YAML: {problem}") from None
    if data is None:
        raise ScenarioError("scenario: the file is empty")
    if not isinstance(data, dict):
        raise ScenarioError(
            f"scenario: must be a YAML mapping of sections, got {type(data).__name__}"
        )
    data.setdefault("name", name)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_error(exc, _line_map(text))) from None


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file.

    Parameters
    ----------
    path
        A YAML file (fields in docs/scenario-reference.md, or ``evosim fields``).

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        The file is missing, unreadable, not YAML, or a field is invalid.
    """
    path = Path(path)
    return parse_scenario(read_user_text(path, "scenario"), name=path.stem)


def read_user_text(path: Path, what: str) -> str:
    """A user's text file, or a :class:`ScenarioError` that starts with ``what``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{what}: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{what}: cannot read {path}: {exc}") from None


def dump_scenario(scenario: Scenario) -> str:
    """The resolved scenario as YAML; :func:`parse_scenario` of it gives an equal Scenario."""
    return yaml.safe_dump(scenario.to_dict(), sort_keys=False, default_flow_style=False)
