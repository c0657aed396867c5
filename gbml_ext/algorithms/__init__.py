"""Meta-learning algorithms, each a small layer over the engine and learn2learn's GBML.

Each module registers its algorithms in `ALGORITHMS` by config name (`register_algorithm`,
`gbml_ext.algorithms.spec`); a learner the fast path can run has a `batched_form()`
(`gbml_ext.fast.form`).
"""
from .anil import ANIL
from .base import MetaLearner
from .gbml import GBML, MAML
from .imaml import IMAML
from .metasgd import MetaSGD
from .reference import Learn2LearnMAML
from .reptile import Reptile
from .spec import ALGORITHMS, AlgorithmSpec, register_algorithm

__all__ = ["ALGORITHMS", "ANIL", "GBML", "IMAML", "MAML", "AlgorithmSpec", "Learn2LearnMAML",
           "MetaLearner", "MetaSGD", "Reptile", "register_algorithm"]
