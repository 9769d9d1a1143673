"""The meta-autoencoder: trained AEs -> vectors -> a small latent space (and back).

See :mod:`evosim.meta.representation` (raw, aligned, functional) and
:mod:`evosim.meta.mae` (the MAE, :class:`MetaResult`).
"""

from evosim.meta.mae import AUTO_LATENTS, MetaResult, ae_reconstruct, fit_meta_autoencoder
from evosim.meta.representation import (
    RepresentationMap,
    align_params,
    flatten_params,
    make_probes,
    represent,
    unflatten_params,
)

__all__ = [
    "AUTO_LATENTS",
    "MetaResult",
    "RepresentationMap",
    "ae_reconstruct",
    "align_params",
    "fit_meta_autoencoder",
    "flatten_params",
    "make_probes",
    "represent",
    "unflatten_params",
]
