"""`validate_parameters`: a flow's parameters checked against its function's type hints, and
converted to them where pydantic (v2, lax mode) can ("3" -> 3, a dict -> a model), before the
function runs — as Prefect 2 did.

A validator is made once per function, on its first call, and kept: a `TypeAdapter` of a
`TypedDict` with one optional item per annotated parameter (unannotated ones are passed as they
are, and a function without annotations gets no validator at all). Only the arguments the
call passed are validated; defaults are the function's own.
"""

from __future__ import annotations

import inspect
import reprlib
import typing
from collections.abc import Callable
from typing import Any

import pydantic
from typing_extensions import TypedDict

from ferroflow.exceptions import ParameterTypeError

Arguments = tuple[tuple[Any, ...], dict[str, Any]]


class _Validator:
    __slots__ = ("signature", "adapter", "names")

    def __init__(self, signature: inspect.Signature, adapter: pydantic.TypeAdapter[Any]) -> None:
        self.signature = signature
        self.adapter = adapter
        # The parameters' names when all are positional-or-keyword: such a call is bound and
        # rebuilt with zip, which costs a fraction of `Signature.bind` and `BoundArguments.args`.
        kinds = {parameter.kind for parameter in signature.parameters.values()}
        self.names = (
            tuple(signature.parameters) if kinds <= {inspect.Parameter.POSITIONAL_OR_KEYWORD} else None
        )


# None: the function has no annotated parameter, nothing to validate.
_validators: dict[Callable[..., Any], _Validator | None] = {}


def validated_arguments(
    owner: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Arguments:
    """`args` and `kwargs` with each annotated parameter's value validated and converted;
    raises `ParameterTypeError` naming each invalid parameter (`TypeError` when the call does
    not fit the signature, as calling the function would)."""
    validator = _validator_for(owner, fn)
    if validator is None:
        return args, kwargs
    names = validator.names
    if names is not None and len(args) <= len(names):
        arguments = dict(zip(names, args))
        arguments.update(kwargs)
        converted = _validated(owner, validator, arguments)
        return (
            tuple(converted[name] if name in converted else value for name, value in zip(names, args)),
            {name: converted[name] if name in converted else value for name, value in kwargs.items()},
        )
    bound = validator.signature.bind(*args, **kwargs)
    bound.arguments.update(_validated(owner, validator, bound.arguments))
    return bound.args, bound.kwargs


def _validated(owner: str, validator: _Validator, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        converted: dict[str, Any] = validator.adapter.validate_python(arguments)
    except pydantic.ValidationError as error:
        raise _parameter_type_error(owner, error) from None
    return converted


def validated_parameters(owner: str, fn: Callable[..., Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` (by name) validated and converted; what `Flow.validate_parameters` returns."""
    validator = _validator_for(owner, fn)
    if validator is None:
        return dict(parameters)
    return {**parameters, **_validated(owner, validator, parameters)}


def _validator_for(owner: str, fn: Callable[..., Any]) -> _Validator | None:
    try:
        return _validators[fn]
    except KeyError:
        pass
    validator = _validators[fn] = _make_validator(owner, fn)
    return validator


def _make_validator(owner: str, fn: Callable[..., Any]) -> _Validator | None:
    signature = inspect.signature(fn)
    annotated = [p for p in signature.parameters.values() if p.annotation is not inspect.Parameter.empty]
    if not annotated:
        return None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as error:
        raise TypeError(
            f"{owner} validates its parameters, but the type hints of {fn.__qualname__} cannot be "
            f"read ({type(error).__name__}: {error}). Make the annotations importable where the "
            "function is defined, or define the flow with validate_parameters=False."
        ) from error
    items: dict[str, Any] = {}
    for parameter in annotated:
        hint = hints.get(parameter.name, Any)
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            hint = tuple[hint, ...]  # type: ignore[valid-type]
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            hint = dict[str, hint]  # type: ignore[valid-type]
        items[parameter.name] = hint
    parameters = TypedDict(f"{fn.__qualname__}.parameters", items, total=False)  # type: ignore[misc]
    # Values of classes pydantic knows nothing about are checked with isinstance.
    parameters.__pydantic_config__ = pydantic.ConfigDict(arbitrary_types_allowed=True)  # type: ignore[attr-defined]
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(parameters)
    except pydantic.PydanticUserError as error:
        raise TypeError(
            f"{owner} validates its parameters, but pydantic cannot validate the type hints of "
            f"{fn.__qualname__}: {error}. Define the flow with validate_parameters=False."
        ) from error
    return _Validator(signature, adapter)


def _parameter_type_error(owner: str, error: pydantic.ValidationError) -> ParameterTypeError:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']} (got {_shown(problem['input'])})"
        for problem in error.errors(include_url=False)
    ]
    return ParameterTypeError(
        f"{owner} received invalid parameters:\n - "
        + "\n - ".join(problems)
        + "\nPass values of the annotated types, or define the flow with validate_parameters=False."
    )


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60


def _shown(value: Any) -> str:
    return _repr.repr(value)
