"""The meta-autoencoder: trained AEs in, a latent point per species, working AEs out.

One module per job:

- :mod:`~evosim.meta.representation`: AE -> vector (raw, aligned, functional), the encoder's input;
- :mod:`~evosim.meta.behaviour`: what the decoder must reproduce (each AE's outputs on its
  species' region and on shared probes);
- :mod:`~evosim.meta.network`: the encoder and the hypernetwork decoder;
- :mod:`~evosim.meta.losses`: the loss terms;
- :mod:`~evosim.meta.refine`: encoding by fitting (a code refined through the decoder);
- :mod:`~evosim.meta.result`: :class:`MetaResult` (encode, decode, generate, save, load);
- :mod:`~evosim.meta.fit`: :func:`fit_meta_autoencoder`.
"""

from evosim.meta.fit import AUTO_LATENTS, fit_meta_autoencoder
from evosim.meta.representation import (
    Frame,
    RepresentationMap,
    align_params,
    flatten_params,
    make_probes,
    represent,
    unflatten_params,
)
from evosim.meta.result import MetaResult

__all__ = [
    "AUTO_LATENTS",
    "Frame",
    "MetaResult",
    "RepresentationMap",
    "align_params",
    "fit_meta_autoencoder",
    "flatten_params",
    "make_probes",
    "represent",
    "unflatten_params",
]
