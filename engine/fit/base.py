"""The seam every fitting method plugs into: a method is checked against its data, initialises the field into
an explicit :class:`FitState`, then fits that state and reports. Its numbers (learning rates, loss weights,
schedules) live in a frozen, documented config of its own, chosen by ``BuildConfig.method`` and overridden by
``BuildConfig.method_options`` -- an ablation is a configuration, never a monkeypatch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import ClassVar, Protocol

import torch

from engine.config import BuildConfig
from engine.errors import Cancelled
from engine.field.model import RadianceField
from engine.fit.data import FitData

Progress = Callable[[str, float], None]
Cancel = Callable[[], bool]


@dataclass
class FitState:
    """A field being fitted and what the fit needs from its initialisation. ``colour_prior``: canonical points
    (N, 3) and the colours (N, 3) the fit keeps the learned colour near (None: no such term), and optionally
    ``colour_prior_weight`` (N,), each point's weight in that term (None: all 1); ``info``: what the
    initialisation reports (timings, losses) for the manifest."""

    field: RadianceField
    data: FitData
    colour_prior: tuple[torch.Tensor, torch.Tensor] | None = None
    colour_prior_weight: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FitReport:
    """What a fit reports for the manifest: ``info`` (``fit_s``, ``history`` of {step, loss, rgb_mse}, ...)."""

    info: dict


class FitMethod(Protocol):
    """A way to make a field agree with the photo. ``name`` is what ``BuildConfig.method`` says; ``Config`` its
    frozen options dataclass (every field documented, with its unit)."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, cfg: BuildConfig, options) -> None: ...

    def check(self, field: RadianceField, data: FitData) -> None:
        """Raise an InputError when this method cannot fit ``data`` (before any work)."""

    def init(self, field: RadianceField, data: FitData, progress: Progress | None, cancel: Cancel | None) -> FitState:
        """Initialise ``field`` in place for ``data``; returns the state the fit continues from."""

    def fit(self, state: FitState, progress: Progress | None, cancel: Cancel | None) -> FitReport:
        """Fit ``state.field`` to ``state.data`` in place."""


def method_options(config_type: type, overrides: dict):
    """``config_type`` with ``overrides`` applied (numbers only; whole numbers for int options, 0 or 1 for
    switches); a ValueError naming the known options for an unknown one."""
    kinds = {f.name: f.type for f in fields(config_type)}
    unknown = sorted(set(overrides) - set(kinds))
    if unknown:
        raise ValueError(f"unknown method options {unknown}; known: {', '.join(kinds)}")
    values = {}
    for name, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"method option {name} must be a finite number, not {value!r}")
        if kinds[name] in ("bool", bool):  # a switch: 0 off, 1 on
            if value not in (0, 1):
                raise ValueError(f"method option {name} is a switch, 0 or 1, not {value!r}")
            value = bool(value)
        elif kinds[name] in ("int", int):
            if not float(value).is_integer():
                raise ValueError(f"method option {name} must be a whole number, not {value!r}")
            value = int(value)
        values[name] = value
    return config_type(**values)


def tick(progress: Progress | None, cancel: Cancel | None, stage: str, frac: float) -> None:
    """Report ``frac`` of ``stage`` done; raise Cancelled when the caller asked to stop."""
    if cancel is not None and cancel():
        raise Cancelled("the build was cancelled")
    if progress is not None:
        progress(stage, frac)
