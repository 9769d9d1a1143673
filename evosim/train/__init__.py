"""One autoencoder per species, all trained at once (stacked parameters, batched products).

>>> bank = train_autoencoders(sim, scenario.autoencoder)   # doctest: +SKIP
"""

from evosim.train.bank import AEBank
from evosim.train.bankset import AEBankSet, load_bank
from evosim.train.spec import AESpec
from evosim.train.trainer import train_autoencoders

__all__ = ["AEBank", "AEBankSet", "AESpec", "load_bank", "train_autoencoders"]
