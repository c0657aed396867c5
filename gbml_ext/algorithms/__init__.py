"""Meta-learning algorithms, each a small layer over the engine and learn2learn's GBML."""
from .anil import ANIL
from .base import MetaLearner
from .gbml import GBML, MAML
from .imaml import IMAML
from .metasgd import MetaSGD
from .reference import Learn2LearnMAML
from .reptile import Reptile

__all__ = ["ANIL", "GBML", "IMAML", "Learn2LearnMAML", "MAML", "MetaLearner", "MetaSGD", "Reptile"]
