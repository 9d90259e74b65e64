"""Fitting methods: how a radiance field is made to agree with the photo(s).

A method (engine.fit.base.FitMethod) is registered here under its name; ``BuildConfig.method`` picks one and
``BuildConfig.method_options`` overrides its config. docs/ARCHITECTURE.md, "Add a fitting method", is the recipe.
"""

from __future__ import annotations

from engine.config import BuildConfig
from engine.errors import InputError
from engine.fit.base import FitMethod, FitReport, FitState, method_options
from engine.fit.head_prior import HeadPriorFit
from engine.fit.proxy_init import ProxyInitFit
from engine.fit.random_init import RandomInitFit

METHODS: dict[str, type] = {}
"""name -> method class, in registration order (the first is the default)."""


class UnknownMethod(InputError):
    code = "unknown_method"


def register(cls: type) -> type:
    """Add a method class (it needs ``name``, ``Config``, ``check``, ``init``, ``fit``); a name is taken once."""
    if cls.name in METHODS:
        raise ValueError(f"a fitting method named {cls.name!r} is registered already ({METHODS[cls.name]!r})")
    METHODS[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def make_method(cfg: BuildConfig) -> FitMethod:
    """The method ``cfg`` asks for, with its options; UnknownMethod (exit 2) naming the known ones on a typo or
    an unknown option."""
    cls = METHODS.get(cfg.method)
    if cls is None:
        raise UnknownMethod(f"unknown fitting method {cfg.method!r}", f"choose one of: {', '.join(method_names())}")
    try:
        options = method_options(cls.Config, dict(cfg.method_options))
    except (TypeError, ValueError) as exc:
        raise UnknownMethod(f"{cfg.method}: {exc}", "see docs/ARCHITECTURE.md, 'Fitting methods'") from exc
    return cls(cfg, options)


register(ProxyInitFit)
register(RandomInitFit)
register(HeadPriorFit)

__all__ = ["METHODS", "FitMethod", "FitReport", "FitState", "UnknownMethod", "make_method", "method_names", "register"]
