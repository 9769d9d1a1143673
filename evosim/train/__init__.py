"""One autoencoder per species, all trained at once (stacked parameters, batched products).

>>> bank = train_autoencoders(sim, scenario.autoencoder)   # doctest: +SKIP
"""

from evosim.train.bank import AEBank
from evosim.train.bankset import AEBankSet, load_bank
from evosim.train.resources import estimate_training_bytes
from evosim.train.spec import AESpec
from evosim.train.trainer import StepEvent, train_autoencoders

__all__ = [
    "AEBank",
    "AEBankSet",
    "AESpec",
    "StepEvent",
    "estimate_training_bytes",
    "load_bank",
    "train_autoencoders",
]
