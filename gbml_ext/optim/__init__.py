"""Gradient transforms for the inner loop: Kronecker-factored meta-optimizers and Meta-SGD;
`TRANSFORMS`, those a config names (`algorithm.transform`)."""
from .frozen import FrozenTransform, NoUpdate
from .kronecker import KroneckerLinearMap, KroneckerMLPMap, KroneckerTransform, kronecker_dims
from .metasgd import MetaSGDTransform, PerParameterLR
from .transforms import TRANSFORMS, ParameterSelection, TransformBuilder, TransformFactory

__all__ = ["TRANSFORMS", "FrozenTransform", "KroneckerLinearMap", "KroneckerMLPMap",
           "KroneckerTransform", "MetaSGDTransform", "NoUpdate", "ParameterSelection",
           "PerParameterLR", "TransformBuilder", "TransformFactory", "kronecker_dims"]
