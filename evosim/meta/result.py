"""The fitted meta-autoencoder, :class:`MetaResult`: encode AEs, decode codes to AEs, sample.

Saved as ``mae.pt``: tensors and plain data only, loadable with
``torch.load(path, weights_only=True)`` (no code runs on load); anything else (a planted
pickle, a truncated or foreign file) is refused with a one-line
:class:`~evosim.errors.FileFormatError` naming the file.
"""

from __future__ import annotations

import copy
import logging
import pickle
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evosim import runio
from evosim.errors import FileFormatError
from evosim.meta.network import (
    Encoder,
    HyperDecoder,
    SideHead,
    particle_bandwidth,
    particle_sample,
)
from evosim.meta.representation import Frame, RepresentationMap
from evosim.scenario import MetaConfig
from evosim.seeding import torch_generator
from evosim.train import model as ae_model
from evosim.train.bank import AEBank, plain_data
from evosim.train.spec import AESpec

__all__ = ["FORMAT", "MetaResult", "decode_spec"]

log = logging.getLogger(__name__)

FORMAT = "evosim.mae"
VERSION = 2


def decode_spec(bank: Any, config: MetaConfig) -> AESpec:
    """The architecture decoded AEs take: ``config.decode_architecture``, or by default the
    architecture most species of ``bank`` have (the first such group on a tie)."""
    groups = list(bank.groups)
    input_dim = groups[0].spec.input_dim
    arch = config.decode_architecture
    if arch is None:
        counts = Counter(int(g) for g in np.asarray(bank.group_of))
        best = max(counts.values())
        return groups[min(g for g, c in counts.items() if c == best)].spec
    return AESpec(
        input_dim=input_dim,
        hidden=tuple(arch.hidden),
        latent=arch.latent,
        activation=arch.activation,
        variant=arch.variant,
    )


def _tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x))


def _optional_tensor(x: Any) -> torch.Tensor | None:
    return None if x is None else _tensor(x)


def _optional_array(x: Any) -> np.ndarray | None:
    return None if x is None else x.numpy().astype(np.float64)


@dataclass
class MetaResult:
    """A fitted meta-autoencoder and the latent point of every member and species.

    Attributes
    ----------
    latents
        ``[S, k]`` species means of the member codes (species in ``species`` order); the
        whole code, which the decoder reads. The analysis reads :attr:`tree_latents`.
    member_latents
        ``[M, k]`` one code per member (species-major, like the bank).
    species, replicates
        As in the bank the MAE was fitted on.
    spec
        The architecture (:class:`~evosim.train.AESpec`) of every decoded AE.
    losses
        ``{"step": [n], "train": [n], "val": [n]}``: the behaviour loss (decoded AE's
        extra error in units of the original AE's own) during the final fit.
    info
        Seed, chosen code size, steps, the decoder's starting AE, timings.
    config
        The :class:`~evosim.scenario.MetaConfig` used.
    representation, frame, encoder, decoder
        The fitted representation map, its principal-axis frame, and the two networks.
    probes
        ``[P, D]`` the shared probes of the behaviour loss.
    archetype_weights
        ``prior: archetypal`` only (else ``None``): ``[S, k + 1]`` each species' simplex
        weights on the archetypes (the mean of its members' A weights), so that
        ``latents == archetype_weights @ archetype_latents``.
    member_archetype_weights
        ``[M, k + 1]`` the same per member (``None`` without the archetypal prior).
    side_head, side_information
        With ``meta.side_information``: the head predicting it from a code
        (:meth:`predict_side`), and the values it was fitted on (``name``, ``species``,
        ``values [S, q]``, their standardisation ``mean``/``scale``), plain data.
    """

    config: MetaConfig
    representation: RepresentationMap
    frame: Frame
    probes: np.ndarray
    encoder: Encoder
    decoder: HyperDecoder
    encoder_init: dict[str, torch.Tensor]
    spec: AESpec
    species: list[str]
    replicates: int
    member_latents: np.ndarray
    latents: np.ndarray
    losses: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    archetype_weights: np.ndarray | None = None
    member_archetype_weights: np.ndarray | None = None
    side_head: SideHead | None = None
    side_information: dict[str, Any] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def latent_dim(self) -> int:
        """k, the code size."""
        return int(self.member_latents.shape[1])

    @property
    def tree_dims(self) -> int:
        """The leading code coordinates the analysis reads (``meta.tree_dims``; default k)."""
        d = self.config.tree_dims
        return self.latent_dim if d is None else min(int(d), self.latent_dim)

    @property
    def tree_latents(self) -> np.ndarray:
        """``[S, tree_dims]`` the species' points the tree is read from: the leading
        :attr:`tree_dims` coordinates of :attr:`latents` (all of them by default)."""
        return self.latents[:, : self.tree_dims]

    @property
    def tree_member_latents(self) -> np.ndarray:
        """``[M, tree_dims]`` the same per member (:attr:`member_latents`' leading ones)."""
        return self.member_latents[:, : self.tree_dims]

    @property
    def kind(self) -> str:
        """The representation the encoder reads (``raw``, ``aligned`` or ``functional``)."""
        return self.representation.kind

    @property
    def seed(self) -> int:
        """The seed the MAE was fitted with."""
        return int(self.info["seed"])

    @property
    def archetype_latents(self) -> np.ndarray | None:
        """``[k + 1, k]`` the archetypes' points in the latent space (``prior: archetypal``):
        the fixed corners ``Z*`` of a regular simplex; ``None`` for other priors."""
        z = getattr(self.encoder, "z_fixed", None)
        return None if z is None else z.detach().cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ encoding

    def represent(self, bank: Any) -> np.ndarray:
        """The encoder's input for a bank: the standardised representation ``[M, F]``."""
        return self.representation.transform(bank)

    def encode_features(self, x: np.ndarray) -> np.ndarray:
        """Codes ``[n, k]`` (posterior means) of standardised representations ``[n, F]``."""
        self.encoder.eval()
        with torch.no_grad():
            c = self.frame.coords(torch.as_tensor(np.asarray(x, dtype=np.float32)))
            mu, _ = self.encoder(c)
        return mu.numpy().astype(np.float64)

    def encode(self, bank: Any, *, steps: int | None = None) -> np.ndarray:
        """Codes ``[M, k]`` of the members of any bank.

        The encoder's one-pass guess, then ``steps`` Adam steps on each code (the decoder
        fixed) toward where the decoded AE best reproduces the member's AE: its outputs on
        its own region and on the shared probes, the behaviour loss the MAE was fitted
        with (:func:`~evosim.meta.refine.refine_codes`). Only the bank's AEs are read.

        With the ``functional`` representation the bank may hold any AE architecture on
        the same inputs (an :class:`~evosim.train.AEBank` or
        :class:`~evosim.train.AEBankSet`); ``raw``/``aligned`` need the architecture the
        MAE was fitted on.

        Parameters
        ----------
        bank
            The AEs to encode.
        steps
            Refinement steps; default ``meta.encode_steps``; 0 gives the encoder's guess.
            Refining needs the inputs the bank keeps (``reference_inputs``, which trained
            banks have); a bank without them (e.g. AEs from :meth:`decode`) gets the
            encoder's guess, with a warning.

        Notes
        -----
        The training members' own codes (:attr:`member_latents`, from which the tree is
        read) are the encoder's at the end of the fit, which the distance term shaped;
        ``encode(bank, steps=0)`` of the training bank returns them, and refining them
        moves them little (they were fitted with the decoder).
        """
        return self.refine(bank, self.encode_features(self.represent(bank)), steps=steps)

    def refine(self, bank: Any, codes: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        """Codes ``[M, k]`` moved from ``codes`` toward where the decoded AEs best reproduce
        the bank's members (the refining step of :meth:`encode`).

        Parameters
        ----------
        bank
            The AEs the codes stand for.
        codes
            ``[M, k]`` starting codes, e.g. ``encode(bank, steps=0)``.
        steps
            Adam steps; default ``meta.encode_steps``; 0 returns ``codes``. A bank that
            keeps no reference inputs gets ``codes`` back, with a warning.
        """
        codes = np.asarray(codes, dtype=np.float64)
        steps = int(self.config.encode_steps if steps is None else steps)
        if steps <= 0:
            return codes
        ref = getattr(bank, "reference_inputs", None)
        if ref is None or len(ref) < 2:
            log.warning(
                "encode: the bank keeps no reference inputs (AEs decoded by an MAE keep "
                "none), so its codes are the encoder's guess, not refined"
            )
            return codes
        from evosim.meta.behaviour import behaviour_targets
        from evosim.meta.refine import refine_codes

        beh = behaviour_targets(bank, self.probes, seed=self.seed)
        return refine_codes(
            self.decoder,
            self.spec,
            beh,
            codes,
            steps=steps,
            probe_weight=self.config.probe_weight,
            spread=float(np.std(self.latents)),
        )

    def encode_weights(self, bank: Any) -> np.ndarray:
        """Archetype weights ``[M, k + 1]`` of the members of any bank (``prior: archetypal``).

        Rows are on the simplex; ``encode(bank) == encode_weights(bank) @ archetype_latents``.

        Raises
        ------
        ValueError
            The MAE was not fitted with the archetypal prior.
        """
        if self.archetype_latents is None:
            raise ValueError("the MAE has no archetypes (meta.prior is not archetypal)")
        self.encoder.eval()
        x = np.asarray(self.represent(bank), dtype=np.float32)
        with torch.no_grad():
            _, extra = self.encoder(self.frame.coords(torch.as_tensor(x)))
        return extra["weights"].numpy().astype(np.float64)

    def predict_side(self, z: Any) -> np.ndarray:
        """The side information ``[n, q]`` (in its own units) the MAE predicts from codes.

        Raises
        ------
        ValueError
            The MAE was fitted without side information.
        """
        if self.side_head is None or self.side_information is None:
            raise ValueError("the MAE was fitted without side information")
        self.side_head.eval()
        with torch.no_grad():
            out = self.side_head(self._codes(z)).numpy().astype(np.float64)
        mean = np.asarray(self.side_information["mean"], dtype=np.float64)
        scale = np.asarray(self.side_information["scale"], dtype=np.float64)
        return out * scale + mean

    def untrained_encode(self, bank_or_features: Any) -> np.ndarray:
        """Codes from the encoder at its random initialisation (a baseline)."""
        x = bank_or_features
        if not isinstance(x, np.ndarray):
            x = self.represent(x)
        fresh = copy.deepcopy(self.encoder)
        fresh.load_state_dict(self.encoder_init)
        fresh.eval()
        with torch.no_grad():
            mu, _ = fresh(self.frame.coords(torch.as_tensor(np.asarray(x, dtype=np.float32))))
        return mu.numpy().astype(np.float64)

    # ------------------------------------------------------------------ decoding

    def _codes(self, z: Any) -> torch.Tensor:
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"codes must be [n, {self.latent_dim}], got shape {z.shape}")
        if not np.isfinite(z).all():
            raise ValueError("codes must be finite")
        return torch.as_tensor(z)

    def decode_params(self, z: Any) -> dict[str, torch.Tensor]:
        """Stacked parameters ``{name: [n, ...]}`` of the AEs decoded from codes ``[n, k]``."""
        self.decoder.eval()
        with torch.no_grad():
            return {k: v.contiguous() for k, v in self.decoder(self._codes(z)).items()}

    def decode(self, z: Any, *, species: list[str] | None = None) -> AEBank:
        """Working AEs decoded from any points of the latent space.

        Parameters
        ----------
        z
            ``[n, k]`` codes (``latents``, their midpoints, any point), or one code ``[k]``.
        species
            Names of the decoded AEs (default ``decoded_1`` .. ``decoded_n``).

        Returns
        -------
        AEBank
            ``n`` AEs of architecture :attr:`spec` (``meta.decode_architecture``), whatever
            the representation the encoder reads.
        """
        params = self.decode_params(z)
        n = next(iter(params.values())).shape[0]
        names = species if species is not None else [f"decoded_{i + 1}" for i in range(n)]
        if len(names) != n:
            raise ValueError(f"species must have {n} names, got {len(names)}")
        return AEBank.from_params(self.spec, params, list(names), replicates=1)

    def decode_archetypes(self) -> AEBank:
        """Working AEs of the archetypes, ``archetype_1`` .. ``archetype_{k+1}``: the AEs
        decoded at :attr:`archetype_latents` (the "archetypal species"; instances of them
        come from ``generate(archetype_latents, n)``).

        Raises
        ------
        ValueError
            The MAE was not fitted with the archetypal prior.
        """
        z = self.archetype_latents
        if z is None:
            raise ValueError("the MAE has no archetypes (meta.prior is not archetypal)")
        return self.decode(z, species=[f"archetype_{j + 1}" for j in range(len(z))])

    def code_law(self, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """The law of the decoded AEs' codes: particles ``[n, K, c]`` and bandwidths ``[n]``.

        For every code the decoder predicts ``K`` particles whose Gaussian kernel density
        (the given bandwidth) is the law of the decoded AE's own codes on its species'
        region; it is trained to match the codes the decoded AE gives its species' region
        inputs, by energy distance. :meth:`generate` samples it.
        """
        self.decoder.eval()
        with torch.no_grad():
            particles = self.decoder.code_law(self._codes(z))
        return particles.numpy(), particle_bandwidth(particles).numpy()

    def generate(self, z: Any, n: int, *, seed: int | None = None) -> np.ndarray:
        """Instances generated by the AEs decoded at ``z``.

        For each code, ``n`` codes are drawn from the decoded AE's code law
        (:meth:`code_law`: a kernel density on particles the MAE decodes along with the
        parameters, matched to the codes the decoded AE gives its species' region inputs),
        and the decoded AE's decoder maps them to instances: what the species' own AE does
        when its decoder is fed the codes of its species' data. A particle law rather than
        a Gaussian because AE codes often lie on curves and loops (a circle's AE codes a
        ring, whose Gaussian would fill its inside and shrink the generated circle).

        Parameters
        ----------
        z
            ``[m, k]`` codes, or one code ``[k]``.
        n
            Instances per code.
        seed
            Seeds the drawn codes; ``None``: the MAE's own seed (:attr:`seed`).

        Returns
        -------
        np.ndarray
            ``[m, n, D]`` float32 (``[n, D]`` for one code ``[k]``).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        single = np.asarray(z).ndim == 1
        codes = self._codes(z)
        gen = torch_generator(self.seed if seed is None else int(seed), "mae-generate")
        self.decoder.eval()
        with torch.no_grad():
            params, particles = self.decoder.decode_all(codes)
            c = particle_sample(particles, n, gen)
            out = ae_model.decode(params, self.spec, c).numpy().astype(np.float32)
        return out[0] if single else out

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        """Write ``mae.pt`` atomically: tensors and plain data only.

        Parameters
        ----------
        path
            The file.
        provenance
            A plain-data record (software, versions, scenario...) stored beside the MAE.
        """
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.model_dump(mode="json"),
            "representation": self.representation.state(),
            "frame": self.frame.state(),
            "probes": torch.as_tensor(self.probes),
            "encoder": {
                "n_in": self.frame.dim,
                "latent": self.latent_dim,
                "state": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
                "init": {k: v.detach().cpu() for k, v in self.encoder_init.items()},
            },
            "decoder": {
                "spec": self.spec.to_dict(),
                "state": {k: v.detach().cpu() for k, v in self.decoder.state_dict().items()},
            },
            "species": list(self.species),
            "replicates": int(self.replicates),
            "member_latents": _tensor(self.member_latents),
            "latents": _tensor(self.latents),
            "losses": {k: _tensor(v) for k, v in self.losses.items()},
            "info": plain_data(self.info),
            "provenance": plain_data(provenance),
            "archetype_weights": _optional_tensor(self.archetype_weights),
            "member_archetype_weights": _optional_tensor(self.member_archetype_weights),
            "side": None
            if self.side_head is None
            else {
                "state": {k: v.detach().cpu() for k, v in self.side_head.state_dict().items()},
                "information": plain_data(self.side_information),
            },
        }
        return runio.torch_save(path, payload)

    @classmethod
    def load(cls, path: str | Path) -> MetaResult:
        """Read a file written by :meth:`save` (never runs code stored in the file).

        Raises
        ------
        FileFormatError
            The file is not a readable evosim MAE (truncated, foreign, or holding objects
            other than tensors and plain data).
        """
        path = Path(path)
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (
            pickle.UnpicklingError,
            RuntimeError,
            EOFError,
            OSError,
            zipfile.BadZipFile,
            ValueError,
            AttributeError,
            ImportError,
            TypeError,
        ) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FileFormatError(
                f"{path}: not a readable evosim MAE file ({first[:160]})",
                hint="delete it (and checkpoints/meta.done) and rerun the meta stage",
            ) from None
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
            raise FileFormatError(
                f"{path}: not an evosim MAE file (format {FORMAT} version {VERSION})",
                hint="delete it (and checkpoints/meta.done) and rerun the meta stage",
            )
        try:
            return cls._from_payload(d)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise FileFormatError(
                f"{path}: damaged evosim MAE file ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None

    @classmethod
    def _from_payload(cls, d: dict[str, Any]) -> MetaResult:
        config = MetaConfig.model_validate(d["config"])
        rep = RepresentationMap.from_state(d["representation"])
        frame = Frame.from_state(d["frame"])
        e = d["encoder"]
        if config.prior == "archetypal" and "z_fixed" not in e["state"]:
            raise ValueError("its archetypal prior is an older one, without fixed archetypes")
        gen = torch.Generator()
        encoder = Encoder(
            int(e["n_in"]),
            list(config.hidden),
            int(e["latent"]),
            config.prior,
            config.archetypes,
            gen,
        )
        encoder.load_state_dict(e["state"])
        spec = AESpec.from_dict(d["decoder"]["spec"])
        state = d["decoder"]["state"]
        theta0 = HyperDecoder.unflatten_theta(state["theta0"], spec)
        decoder = HyperDecoder(int(e["latent"]), list(config.decoder_hidden), spec, theta0, gen)
        decoder.load_state_dict(state)
        encoder.eval()
        decoder.eval()
        side_head, side_info = None, None
        if d.get("side") is not None:
            side_info = dict(d["side"]["information"])
            n_out = len(side_info["mean"])
            side_head = SideHead(int(e["latent"]), n_out, gen)
            side_head.load_state_dict(d["side"]["state"])
            side_head.eval()
        return cls(
            config=config,
            representation=rep,
            frame=frame,
            probes=d["probes"].numpy(),
            encoder=encoder,
            decoder=decoder,
            encoder_init=dict(e["init"]),
            spec=spec,
            species=[str(s) for s in d["species"]],
            replicates=int(d["replicates"]),
            member_latents=d["member_latents"].numpy(),
            latents=d["latents"].numpy(),
            losses={k: v.numpy() for k, v in d["losses"].items()},
            info=dict(d["info"]),
            archetype_weights=_optional_array(d.get("archetype_weights")),
            member_archetype_weights=_optional_array(d.get("member_archetype_weights")),
            side_head=side_head,
            side_information=side_info,
        )
