"""Binding a call's arguments to its function's parameter names: the one place that does it,
with one cache of what it reads of each function's signature.

Reading a signature (`inspect.signature`) costs more than the rest of binding a call, and the
engine binds the arguments of every recorded run (on the run store's writer thread) and of
every call whose cache key function takes its parameters. So each function's signature is read
once, and calls whose parameters are all positional-or-keyword are bound with `zip`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, ItemsView, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class _Shape:
    """What binding needs of a function's signature, read once per function."""

    signature: inspect.Signature | None
    """None for a callable without a signature."""
    positional: tuple[str, ...] | None
    """The positional parameters' names; None with *args or without a signature."""
    plain: tuple[tuple[str, ...], dict[str, Any]] | None
    """Names and defaults when every parameter is positional-or-keyword, else None."""


_shapes: dict[Any, _Shape] = {}


def _shape(fn: Callable[..., Any]) -> _Shape:
    try:
        return _shapes[fn]
    except KeyError:
        shape = _shapes[fn] = _read_shape(fn)
        return shape
    except TypeError:  # an unhashable callable: nothing to keep it by
        return _read_shape(fn)


def _read_shape(fn: Callable[..., Any]) -> _Shape:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return _Shape(None, None, None)
    parameters = signature.parameters.values()
    positional_kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = None
    if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        positional = tuple(p.name for p in parameters if p.kind in positional_kinds)
    plain = None
    if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        names = tuple(p.name for p in parameters)
        defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        plain = (names, defaults)
    return _Shape(signature, positional, plain)


def positional_parameter_names(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names of `fn`'s positional parameters; None if it takes *args or has no signature."""
    return _shape(fn).positional


def bind_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a call by parameter name (as passed: defaults are not filled in)."""
    shape = _shape(fn)
    names = shape.positional
    if names is not None and len(args) <= len(names):
        arguments = dict(zip(names, args))
        arguments.update(kwargs)
        return arguments
    try:
        if shape.signature is not None:
            return dict(shape.signature.bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        pass
    # A call that does not fit the signature: show what was passed.
    return {**{f"arg{i}": value for i, value in enumerate(args)}, **kwargs}


def parameters_with_defaults(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The arguments of a call by parameter name, defaults applied — what `Signature.bind` and
    `apply_defaults` give — for a function whose parameters are all positional-or-keyword; None
    for other signatures, or a call that does not fit (bind it the slow way, which says why)."""
    plain = _shape(fn).plain
    if plain is None or len(args) > len(plain[0]):
        return None
    names, defaults = plain
    arguments = dict(zip(names, args))
    passed_by_name = 0
    for name in names[len(args) :]:
        if name in kwargs:
            arguments[name] = kwargs[name]
            passed_by_name += 1
        elif name in defaults:
            arguments[name] = defaults[name]
        else:
            return None  # a missing argument
    return arguments if passed_by_name == len(kwargs) else None  # else unknown or doubled names


def bind_with_defaults(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments of a call by parameter name with defaults applied; a call that does not fit
    the signature raises `TypeError` saying why."""
    arguments = parameters_with_defaults(fn, args, kwargs)
    if arguments is not None:
        return arguments
    signature = _shape(fn).signature
    if signature is None:
        signature = inspect.signature(fn)  # raises: no signature to bind to
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class LazyParameters(Mapping[str, Any]):
    """A call's arguments by parameter name, bound to the signature only when read.

    The store summarizes parameters on its writer thread; binding there keeps it off the
    caller's path.
    """

    __slots__ = ("_fn", "_args", "_kwargs", "_bound")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._bound: dict[str, Any] | None = None

    def _arguments(self) -> dict[str, Any]:
        if self._bound is None:
            self._bound = bind_arguments(self._fn, self._args, self._kwargs)
        return self._bound

    def __getitem__(self, name: str) -> Any:
        return self._arguments()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arguments())

    def __len__(self) -> int:
        return len(self._arguments())

    def items(self) -> ItemsView[str, Any]:
        # The bound dict's own view: Mapping's generic one looks every key up again in Python,
        # and the writer thread summarizes every task run's parameters through it.
        return self._arguments().items()
