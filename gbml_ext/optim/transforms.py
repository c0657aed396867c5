"""How a transform factory decides which parameters it covers, and the registry of transforms.

learn2learn's `ParameterUpdate` calls a factory once per parameter and expects a module, or
`None` for "plain gradient". Our factories also receive the parameter's name, so a caller can
choose parameters by name and errors can say which parameter a factory cannot handle.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch import nn

from ..registry import Registry

__all__ = ["TRANSFORMS", "ParameterSelection", "TransformBuilder", "TransformFactory"]

ParameterSelection = Union[None, Iterable[str], Callable[[str], bool]]


class TransformFactory:
    """Base class: builds one gradient transform per selected parameter.

    Arguments:
        params: which parameters get a transform. `None` means all of them; a list of names
            (as in `module.named_parameters()`) selects those; a callable `name -> bool` selects
            by predicate. Unselected parameters take the plain gradient step.

    Subclasses implement `build(name, param) -> nn.Module`, a module mapping a gradient of
    `param.shape` to an update of the same shape. Calling the factory, `factory(param, name)`,
    returns that module on `param`'s device and dtype, or None for an unselected parameter;
    `GBML(model, transform=factory)` calls it once per parameter.

    Example:
        >>> import gbml_ext
        >>> class Halve(nn.Module):
        ...     def forward(self, grad):
        ...         return grad / 2
        >>> class HalfStep(TransformFactory):
        ...     def build(self, name, param):
        ...         return Halve()
        >>> factory = HalfStep(params=["weight"])
        >>> factory(torch.zeros(2, 3), "weight"), factory(torch.zeros(2), "bias")
        (Halve(), None)
        >>> learner = gbml_ext.GBML(nn.Linear(3, 2), transform=factory, lr=0.1)
    """

    def __init__(self, params: ParameterSelection = None):
        if params is None or callable(params):
            self.param_names = None
            self._predicate = params
        else:
            if isinstance(params, str):
                params = [params]
            self.param_names = list(params)
            self._predicate = None

    def selects(self, name: str) -> bool:
        """Whether the parameter called `name` gets a transform."""
        if self.param_names is not None:
            return name in self.param_names
        return self._predicate is None or bool(self._predicate(name))

    def check_names(self, module: nn.Module) -> None:
        """Raises a `ValueError` if `params` names a parameter `module` does not have, or if a
        list or predicate passed as `params` selects none of its parameters.

        Arguments:
            module: the model the transform will be built for.

        Example:
            >>> factory = TransformFactory(params=lambda name: "head" in name)
            >>> factory.check_names(torch.nn.Linear(3, 2))  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: TransformFactory(params=...) selects none of the model's parameters...
        """
        if self.param_names is None and self._predicate is None:
            return
        names = [name for name, _ in module.named_parameters()]
        if self.param_names is not None:
            known = set(names)
            missing = [n for n in self.param_names if n not in known]
            if missing:
                raise ValueError(
                    f"{type(self).__name__} was asked for parameter(s) {missing}, which the model "
                    f"does not have. Its parameters are: {sorted(known)}. Fix the names passed as "
                    f"params=, or pass a predicate such as "
                    f"params=lambda name: name.startswith('head')."
                )
        if not any(self.selects(name) for name in names):
            raise ValueError(
                f"{type(self).__name__}(params=...) selects none of the model's parameters, so "
                f"it would transform nothing. The parameters are: {names}. Select some of them, "
                f"or pass transform=None for plain gradient steps."
            )

    def __call__(self, param: torch.Tensor, name: str = "<unnamed>") -> Optional[nn.Module]:
        if not self.selects(name):
            return None
        # Built on the parameter's device and dtype, so a float64 or CUDA model just works.
        return self.build(name, param).to(device=param.device, dtype=param.dtype)

    def precision_warning(self, precision: str) -> Optional[str]:
        """Why meta-training with this transform at `precision` (a config's `precision` key:
        "fp32", "tf32", "bf16") is not advised, or None; a run prints it as a warning.

        Example:
            >>> TransformFactory().precision_warning("bf16") is None
            True
        """
        return None

    def build(self, name: str, param: torch.Tensor) -> nn.Module:
        """The transform of one selected parameter; subclasses implement it.

        Arguments:
            name: the parameter's name in `module.named_parameters()`.
            param: the parameter; the module maps a gradient of `param.shape` to an update of
                the same shape.
        """
        raise NotImplementedError


# (the config's [algorithm] section: transform_params, transform_psd, ...) -> a factory, or
# None for plain gradient steps.
TransformBuilder = Callable[[Any], Optional[TransformFactory]]
# algorithm.transform's values. The learner's batched form carries what a transform builds.
TRANSFORMS: Registry[TransformBuilder] = Registry("algorithm.transform")
TRANSFORMS.register("none", lambda config: None, doc="plain gradient steps")
