"""Scenario files: YAML in, a validated and typed :class:`Scenario` out.

Every field has a default, so a scenario can be three lines. Validation is done by
pydantic; this module only turns its errors into one line that names the field path
and, where the YAML has one, the line (``tree.birth_rate (line 4): must be > 0, got -1``).
"""

from __future__ import annotations

import secrets
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

    model: Literal["yule", "birth_death", "coalescent", "newick"] = "birth_death"
    n_species: int = Field(32, ge=2, le=10_000_000)
    birth_rate: float = Field(1.0, gt=0)
    death_rate: float = Field(0.2, ge=0)
    population_size: float = Field(1.0, gt=0)
    newick: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TreeConfig:
        if self.model == "birth_death" and self.death_rate >= self.birth_rate:
            raise _FieldError(
                "death_rate", f"must be < birth_rate ({self.birth_rate}), got {self.death_rate}"
            )
        if self.model == "newick" and not self.newick:
            raise _FieldError("newick", "is required when tree.model is newick")
        return self


class PopulationConfig(_Section):
    """The population-genetic engine (``traits.population``, for ``traits.model: population``)."""

    size: int = Field(200, ge=2)
    generations_per_time: int = Field(100, ge=1)
    founder_size: int = Field(50, ge=1)
    mutation_sigma: float = Field(0.05, ge=0)
    mutation_rate: float = Field(1.0, ge=0, le=1)
    recombination: float = Field(0.0, ge=0, le=1)
    fitness: Literal["neutral", "stabilizing"] = "stabilizing"
    selection_strength: float = Field(0.5, ge=0)
    optimum_sigma: float = Field(1.0, ge=0)
    optimum_shift: float = Field(0.0, ge=0)
    selection: Literal["wright_fisher", "tournament"] = Field(
        "wright_fisher", description="fitness-proportional Wright-Fisher sampling or tournaments"
    )
    tournament_size: int = Field(2, ge=1)
    workers: int | None = Field(None, ge=1)
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

    model: Literal["brownian", "ou", "early_burst", "jumps", "population"] = "brownian"
    dim: int = Field(8, ge=1)
    sigma: float = Field(1.0, gt=0)
    root: float | list[float] = 0.0
    correlation: list[list[float]] | None = None
    alpha: float = Field(0.5, gt=0)
    theta: float | list[float] = 0.0
    decay: float = Field(-1.0, lt=0, description="early burst: rate sigma^2 exp(decay t)")
    jump_probability: float = Field(0.5, ge=0, le=1)
    jump_scale: float = Field(1.0, ge=0)
    population: PopulationConfig = Field(default_factory=PopulationConfig)

    @model_validator(mode="after")
    def _check(self) -> TraitsConfig:
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

    family: Literal["development", "circles", "outline"] = "development"
    instances: int = Field(512, ge=2)
    ambient_dim: int = Field(32, ge=1)
    individual_variation: float = Field(0.1, ge=0)
    noise: float = Field(0.01, ge=0)
    instance_latent: int = Field(1, ge=1, description="per-instance hidden variables")
    development_hidden: int = Field(64, ge=1)
    outline_points: int = Field(32, ge=4)


_Activation = Literal["relu", "tanh", "elu", "gelu", "softplus", "sigmoid"]
_Variant = Literal["plain", "denoising", "sparse", "contractive", "variational"]


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

    variant: _Variant = "plain"
    hidden: list[int] = Field(default_factory=lambda: [64])
    latent: int = Field(2, ge=1)
    activation: _Activation = "elu"
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    init: Literal["shared", "independent"] = "shared"
    replicates: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the step; auto: on CUDA, and on CPU for long runs"
    )
    corruption: float = Field(0.1, ge=0, description="denoising: input noise std")
    sparsity: Literal["l1", "kl"] = "l1"
    sparsity_weight: float = Field(1e-3, ge=0)
    sparsity_target: float = Field(0.05, gt=0, lt=1)
    contractive_weight: float = Field(1e-3, ge=0)
    kl_weight: float = Field(1e-3, ge=0)
    checkpoint_every: int = Field(500, ge=1)
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


class MetaConfig(_Section):
    """The meta-autoencoder over the trained AEs (``meta:``)."""

    representation: Literal["raw", "aligned", "functional"] = "functional"
    standardize: Literal["block", "feature"] = Field(
        "block", description="scale each block of features together, or z-score each feature"
    )
    latent: int | Literal["auto"] = 16
    prior: Literal["none", "variational", "archetypal"] = "none"
    steps: int = Field(1000, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [128])
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    kl_weight: float = Field(1e-3, ge=0)
    functional_weight: float = Field(0.0, ge=0)
    contrastive_weight: float = Field(0.0, ge=0)
    distance_weight: float = Field(
        1.0, ge=0, description="keep pairwise distances of the codes like the representation's"
    )
    probes: int = Field(256, ge=1)
    off_manifold_fraction: float = Field(0.25, ge=0, le=1)
    archetypes: int = Field(4, ge=2)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("latent")
    @classmethod
    def _positive_latent(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 or 'auto', got {v}")
        return v


class AnalysisConfig(_Section):
    """Latent space -> tree -> scores (``analysis:``)."""

    method: Literal["nj", "upgma"] = "nj"
    baselines: list[str] | Literal["all"] = "all"
    mantel_permutations: int = Field(999, ge=0)
    random_trees: int = Field(100, ge=1)


class Scenario(_Section):
    """A whole evolution scenario. Sections mirror the pipeline stages."""

    name: str = "scenario"
    seed: int = Field(default_factory=lambda: secrets.randbelow(2**31), ge=0, lt=2**63)
    tree: TreeConfig = Field(default_factory=TreeConfig)
    traits: TraitsConfig = Field(default_factory=TraitsConfig)
    species: SpeciesConfig = Field(default_factory=SpeciesConfig)
    autoencoder: AutoencoderConfig = Field(default_factory=AutoencoderConfig)
    meta: MetaConfig = Field(default_factory=MetaConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (every default filled in)."""
        return self.model_dump(mode="json")


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
        return "unknown field (check the spelling; see DESIGN.md for the fields)"
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
        A YAML file (format in DESIGN.md).

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        The file is missing, unreadable, not YAML, or a field is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario: cannot read {path}: {exc}") from None
    return parse_scenario(text, name=path.stem)


def dump_scenario(scenario: Scenario) -> str:
    """The resolved scenario as YAML; :func:`parse_scenario` of it gives an equal Scenario."""
    return yaml.safe_dump(scenario.to_dict(), sort_keys=False, default_flow_style=False)
