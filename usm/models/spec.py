"""One registry entry (name, class, defaults) and the record of a model's constructor arguments.

    >>> import torch.nn as nn
    >>> from usm.models.spec import ModelSpec, records_config
    >>> @records_config
    ... class Toy(nn.Linear):
    ...     def __init__(self, in_features: int = 2, out_features: int = 3, bias: bool = True):
    ...         super().__init__(in_features, out_features, bias)
    >>> spec = ModelSpec("Toy", Toy, dict(in_features=2), "a toy")
    >>> spec.build(out_features=5).config
    {'in_features': 2, 'out_features': 5, 'bias': True}
    >>> spec.check_model_args({"bias": "flase"})
    Traceback (most recent call last):
    ...
    usm.models.spec.ModelArgError: Toy: bias='flase' is not a bool; use true or false

``records_config`` captures every constructor argument, defaults included, as ``model.config``:
the constructor is the one place a model's arguments are listed, and checkpoints and run
directories store that record to rebuild the model. ``check_model_args`` checks the names and types
of constructor arguments (``model_args``; ``--model-arg`` on a command line) against the
constructor's signature before anything is built.
Each model family ends its module with a ``{name: ModelSpec}`` table; ``usm.models.registry``
merges them.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from usm import deprecated
from usm.cli import typed

MESSAGES = {"bool": "is not a bool; use true or false", "int": "is not an integer", "float": "is not a number",
            "str": "is not a string"}


class ModelArgError(ValueError):
    """A constructor override that does not fit the model's signature."""


def records_config(cls):
    """Class decorator: after ``__init__``, ``self.config`` holds every argument it was called with."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        if type(self) is cls:  # the outermost recorded class speaks for the object
            self.config = {k: v for k, v in bound.arguments.items() if k != "self"}

    cls.__init__ = wrapped
    cls.init_signature = signature
    return cls


def check_arg(owner: str, parameter: inspect.Parameter, value):
    """``value`` if it fits ``parameter``'s annotation (an int is accepted for a float), else ModelArgError."""
    annotation = parameter.annotation
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if kind not in MESSAGES or value is None and parameter.default is None:
        return value
    try:
        return typed(kind, value)
    except TypeError:
        raise ModelArgError(f"{owner}: {parameter.name}={value!r} {MESSAGES[kind]}") from None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    cls: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def family(self) -> str:
        return self.name.split("-")[0]

    def parameters(self) -> dict[str, inspect.Parameter]:
        signature = getattr(self.cls, "init_signature", None) or inspect.signature(self.cls)
        return {n: p for n, p in signature.parameters.items() if n != "self"}

    def check_model_args(self, model_args: dict) -> dict:
        """``model_args`` with checked types; ModelArgError names an unknown or mistyped one."""
        parameters, checked = self.parameters(), {}
        for key, value in deprecated.model_args(model_args).items():
            if key not in parameters:
                raise ModelArgError(f"{self.name} has no constructor argument {key!r}; "
                                    f"valid: {', '.join(sorted(parameters))}")
            checked[key] = check_arg(self.name, parameters[key], value)
        return checked

    def build(self, **model_args) -> nn.Module:
        return self.cls(**{**self.defaults, **self.check_model_args(model_args)})


LATENT_256 = dict(input_size=32, in_channels=4)  # every table's default input: a 256 px image's SD-VAE latent


def family_table(cls, rows) -> dict[str, ModelSpec]:
    """``{name: ModelSpec}`` from rows of (name, description, size arguments), on ``LATENT_256``."""
    return {name: ModelSpec(name, cls, {**LATENT_256, **sizes}, description) for name, description, sizes in rows}
