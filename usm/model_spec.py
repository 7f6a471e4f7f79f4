"""One registry entry: a name, the class that builds it, its defaults and a one-line description.

    >>> from usm.model_spec import ModelSpec
    >>> import torch.nn as nn
    >>> spec = ModelSpec("Lin", nn.Linear, dict(in_features=2, out_features=3), "a toy")
    >>> spec.build(out_features=5).out_features
    5

Each model family ends its module with a ``{name: ModelSpec}`` table; ``usm.registry`` merges them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    cls: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def build(self, **overrides) -> nn.Module:
        return self.cls(**{**self.defaults, **overrides})

    @property
    def family(self) -> str:
        return self.name.split("-")[0]
