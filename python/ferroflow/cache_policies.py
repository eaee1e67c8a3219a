"""Cache policies: what a task's cache key is made of, composed from parts.

    from ferroflow.cache_policies import INPUTS, TASK_SOURCE
    @task(cache_policy=INPUTS + TASK_SOURCE)
    @task(cache_policy=(INPUTS - "verbose").configure(isolation_level="SERIALIZABLE"))

The parts:

- `INPUTS`: the call's arguments by name (defaults applied), by the canonical encoding of
  `ferroflow.cache_keys` (type and value). `INPUTS - "verbose"` leaves an argument out.
- `TASK_SOURCE`: the function's source text, the values its closure holds, and the source (with
  closures) of the module-level functions of its own module that it names, followed through
  their own calls. Functions of other modules (the standard library, installed packages) are
  left out: their source changes with their version, which a key must not follow.
- `FLOW_PARAMETERS`: the parameters of the flow run the task runs in.
- `RUN_ID`: the id of the flow run: a cache shared by the task runs of one flow run only.
- `NONE`: nothing; a policy of only `NONE` caches nothing.
- `DEFAULT`: `INPUTS + TASK_SOURCE + RUN_ID` (as Prefect 3's default: reuse within a flow run).
- `CacheKeyFnPolicy(fn)`: a `cache_key_fn`; `@task(cache_key_fn=fn)` is this policy alone and
  behaves exactly as before (the function's key is the cache key).

`a + b` is a compound policy whose key is made of every part's. Every key also includes the
task's qualified name, so two tasks with the same inputs never share an entry by accident
(a `cache_key_fn` alone keeps its own key, which is global as in Prefect 2).

A policy **fails closed**: when any part cannot make its piece — an input or a closure value
that cannot be encoded, a function without readable source, flow parameters not known in this
process — the call is not cached (it runs, nothing is looked up or written), with one
`CacheKeyWarning` naming what could not be hashed. Prefect 3 cached on the remaining parts.

`policy.configure(isolation_level=..., cache_storage=...)` gives a copy with the isolation level
(`"READ_COMMITTED"`, the default, or `"SERIALIZABLE"`: concurrent runs of one key compute it
once) and the storage that keeps the cache records (a storage, a saved storage's slug or a
folder; by default the task's result storage).
"""

from __future__ import annotations

import contextlib
import inspect
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ferroflow.cache_keys import (
    SOURCE_DIGEST_ATTRIBUTE,
    UnhashableInput,
    _source_digest,
    canonical_encoding,
    carry_source_digest,
    hash_canonical,
)
from ferroflow.exceptions import CacheKeyFunctionError, CacheKeyWarning

READ_COMMITTED = "READ_COMMITTED"
SERIALIZABLE = "SERIALIZABLE"
ISOLATION_LEVELS = (READ_COMMITTED, SERIALIZABLE)


class KeyPieceUnavailable(Exception):
    """A part of a policy cannot make its piece of the key; `what` names the input or value."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


class _NotCached(Exception):
    """A part decided the call is not cached (a cache_key_fn returned None)."""


def check_isolation_level(owner: str, level: Any) -> str | None:
    if level is None:
        return None
    if isinstance(level, str) and level.upper() in ISOLATION_LEVELS:
        return level.upper()
    raise ValueError(
        f"{owner}: isolation_level={level!r} is not valid; give "
        f"{' or '.join(repr(name) for name in ISOLATION_LEVELS)} (or None for the default)."
    )


class CachePolicy:
    """A way to make a cache key from a task run. Subclasses give `pieces(context)`."""

    def __init__(self, *, isolation_level: str | None = None, cache_storage: Any = None) -> None:
        self.isolation_level = check_isolation_level("cache policy", isolation_level)
        self.cache_storage = cache_storage
        # SERIALIZABLE: how long a lock outlives its holder's last heartbeat, and how long a
        # run waits for another run of its key before failing.
        self.lock_lease_seconds: float | None = None
        self.lock_wait_seconds: float | None = None

    # -- composing ---------------------------------------------------------------------------------

    def parts(self) -> tuple[CachePolicy, ...]:
        return (self,)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        compound = CompoundCachePolicy([*self.parts(), *other.parts()])
        for option in ("isolation_level", "cache_storage", "lock_lease_seconds", "lock_wait_seconds"):
            mine, theirs = getattr(self, option), getattr(other, option)
            setattr(compound, option, theirs if theirs is not None else mine)
        return compound

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            return NotImplemented
        if not any(isinstance(part, Inputs) for part in self.parts()):
            raise TypeError(
                f"{self!r} - {name!r}: `- name` leaves an argument out of INPUTS, and this "
                f"policy has no INPUTS part. Use (INPUTS - {name!r}) + ... instead."
            )
        parts = [part.without(name) if isinstance(part, Inputs) else part for part in self.parts()]
        policy = parts[0] if len(parts) == 1 else CompoundCachePolicy(parts)
        for option in ("isolation_level", "cache_storage", "lock_lease_seconds", "lock_wait_seconds"):
            setattr(policy, option, getattr(self, option))
        return policy

    def configure(
        self,
        *,
        isolation_level: str | None = None,
        cache_storage: Any = None,
        lock_lease_seconds: float | None = None,
        lock_wait_seconds: float | None = None,
    ) -> CachePolicy:
        """A copy with the given isolation level, cache storage (a storage, a saved storage's
        slug or a folder), and for SERIALIZABLE the lock's lease (default 60 s: how long after
        its holder's last heartbeat another run takes the lock over) and the longest wait for
        another run of the same key (default 600 s); options not given are kept."""
        copy = self._copy()
        if isolation_level is not None:
            copy.isolation_level = check_isolation_level("configure()", isolation_level)
        if cache_storage is not None:
            copy.cache_storage = cache_storage
        for name, seconds in (
            ("lock_lease_seconds", lock_lease_seconds),
            ("lock_wait_seconds", lock_wait_seconds),
        ):
            if seconds is None:
                continue
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise ValueError(
                    f"configure(): {name}={seconds!r} is not valid; give a number of seconds > 0."
                )
            setattr(copy, name, float(seconds))
        return copy

    def _copy(self) -> CachePolicy:
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        return copy

    # -- keys --------------------------------------------------------------------------------------

    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        """(label, value) pairs whose canonical encoding makes the key; may raise
        `KeyPieceUnavailable` (fail closed) or `_NotCached`."""
        raise NotImplementedError

    def compute_key(self, context: Any) -> str | None:
        """The cache key of the task run `context` (a `TaskRunContext`), or None when the call
        is not cached — after one `CacheKeyWarning` if a part could not make its piece."""
        task = context.task
        try:
            pieces = [piece for part in self.parts() for piece in part.pieces(context)]
            if not pieces:
                return None
            try:
                return hash_canonical(("ferroflow.cache_policy", _task_name(task), pieces))
            except (UnhashableInput, RecursionError) as error:
                raise _culprit(pieces, error) from error
        except _NotCached:
            return None
        except KeyPieceUnavailable as missing:
            warnings.warn(
                f"The cache policy of task {task.name!r} could not hash {missing.what} "
                f"({missing.reason}). The task runs without caching; pass a value that can be "
                "pickled, leave it out of the policy (INPUTS - 'name'), or use another policy.",
                CacheKeyWarning,
                stacklevel=2,
            )
            return None

    def __repr__(self) -> str:
        return type(self).__name__


def _task_name(task: Any) -> str:
    fn = inspect.unwrap(task.fn)
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else str(task.name)


def _culprit(pieces: list[tuple[str, Any]], error: BaseException) -> KeyPieceUnavailable:
    """Which piece (and which input in it) the encoding refused."""
    reason = "it is nested too deeply to encode" if isinstance(error, RecursionError) else str(error)
    for label, value in pieces:
        if label == "inputs":
            for name, item in value.items():
                if not _encodes(item):
                    return KeyPieceUnavailable(f"the input {name!r}", reason)
        elif not _encodes(value):
            return KeyPieceUnavailable(label, reason)
    return KeyPieceUnavailable("its key", reason)


def _encodes(value: Any) -> bool:
    try:
        canonical_encoding(value)
    except (UnhashableInput, RecursionError):
        return False
    return True


class CompoundCachePolicy(CachePolicy):
    def __init__(self, parts: list[CachePolicy], **options: Any) -> None:
        super().__init__(**options)
        self._parts = tuple(parts)

    def parts(self) -> tuple[CachePolicy, ...]:
        return self._parts

    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        for part in self._parts:
            yield from part.pieces(context)

    def __repr__(self) -> str:
        return " + ".join(repr(part) for part in self._parts)


class Inputs(CachePolicy):
    """The call's arguments by name, without those in `exclude`."""

    def __init__(self, exclude: frozenset[str] = frozenset(), **options: Any) -> None:
        super().__init__(**options)
        self.exclude = frozenset(exclude)

    def without(self, name: str) -> Inputs:
        copy = self._copy()
        assert isinstance(copy, Inputs)
        copy.exclude = self.exclude | {name}
        return copy

    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        parameters: Mapping[str, Any] = context.parameters
        if self.exclude:
            parameters = {name: value for name, value in parameters.items() if name not in self.exclude}
        yield "inputs", parameters

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {name!r}" for name in sorted(self.exclude))


class TaskSource(CachePolicy):
    """The task function's source, closure values, and the module-level functions it calls."""

    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        yield "task source", function_fingerprint(inspect.unwrap(context.task.fn))

    def __repr__(self) -> str:
        return "TASK_SOURCE"


class FlowParameters(CachePolicy):
    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        parameters = getattr(context.flow_run, "parameters", None)
        if parameters is None:
            raise KeyPieceUnavailable(
                "the flow run's parameters", "they are not known where this task run executes"
            )
        yield "flow parameters", dict(parameters)

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class RunId(CachePolicy):
    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        yield "run id", str(context.flow_run.id)

    def __repr__(self) -> str:
        return "RUN_ID"


class NoCache(CachePolicy):
    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        return iter(())

    def __repr__(self) -> str:
        return "NONE"


class CacheKeyFnPolicy(CachePolicy):
    """A `cache_key_fn` as a policy: its string is the piece (alone, the key itself); None
    means the call is not cached; raising or returning a non-string fails the run with
    `CacheKeyFunctionError`, as `cache_key_fn` always did."""

    def __init__(self, key_fn: Callable[..., str | None], **options: Any) -> None:
        super().__init__(**options)
        if not callable(key_fn):
            raise TypeError(f"CacheKeyFnPolicy takes a function, not {key_fn!r}.")
        self.key_fn = key_fn

    def compute_key(self, context: Any) -> str | None:
        return call_key_fn(self.key_fn, context)

    def pieces(self, context: Any) -> Iterator[tuple[str, Any]]:
        key = call_key_fn(self.key_fn, context)
        if key is None:
            raise _NotCached
        yield "cache_key_fn", key

    def __repr__(self) -> str:
        return f"CacheKeyFnPolicy({getattr(self.key_fn, '__qualname__', self.key_fn)!r})"


def call_key_fn(key_fn: Callable[..., Any], context: Any, arity: int | None = None) -> str | None:
    """Call a cache key function with what it accepts — `(context, parameters)`, `(context)`
    or nothing (the spec's `cache_key_fn=lambda: "always"`) — and check that it gave a string
    of valid Unicode, or None ("do not cache this call"). `arity`, how many of the two it takes,
    may be given by a caller that knows it already."""
    task_name = context.task.name
    if arity is None:
        arity = _positional_arity(key_fn)
    try:
        if arity >= 2:
            key = key_fn(context, context.parameters)
        elif arity == 1:
            key = key_fn(context)
        else:
            key = key_fn()
    except Exception as error:
        raise CacheKeyFunctionError(
            f"The cache key function {_describe(key_fn)} of task {task_name!r} raised "
            f"{type(error).__name__}: {error}. The task did not run. Fix the function, or return "
            "None from it for calls that should not be cached."
        ) from error
    if key is None:
        return key
    if type(key) is str:
        if key.isascii():
            return key
        try:
            key.encode("utf-8")  # the run store and the records keep keys as UTF-8 text
        except UnicodeEncodeError as error:
            raise CacheKeyFunctionError(
                f"The cache key function {_describe(key_fn)} of task {task_name!r} returned a string "
                f"that is not valid Unicode ({_short_repr(key)}: a lone surrogate at index "
                f"{error.start}), which no run store can keep. The task did not run. Build the key "
                "from valid text, e.g. a digest's hexdigest(); bytes decoded with "
                "errors='surrogateescape' (file names) can be re-encoded first."
            ) from None
        return key
    raise CacheKeyFunctionError(
        f"The cache key function {_describe(key_fn)} of task {task_name!r} returned "
        f"{type(key).__name__} {_short_repr(key)}; a cache key must be a string (or None to not "
        "cache the call). The task did not run. Return e.g. str(...) or a digest's hexdigest()."
    )


def _describe(key_fn: Callable[..., Any]) -> str:
    return getattr(key_fn, "__qualname__", None) or repr(key_fn)


def _short_repr(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _positional_arity(fn: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    count = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return 2
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


# --- TASK_SOURCE ---------------------------------------------------------------------------------


def function_fingerprint(fn: Callable[..., Any]) -> tuple[Any, ...]:
    """The function's source digest, its closure's values and the fingerprints of the
    module-level functions of its module that its code names (followed through their own
    code), as one encodable tuple. Raises `KeyPieceUnavailable` when a source cannot be read or
    a closure value cannot be encoded."""
    seen: dict[Any, int] = {}
    return _fingerprint(fn, seen, path=getattr(fn, "__qualname__", repr(fn)))


def carry_source_digests(fn: Callable[..., Any]) -> None:
    """Record on `fn`, and on the functions its fingerprint follows, their source digests, here
    where their source can be read: a process that gets them by value (cloudpickle sends a task
    defined in `__main__` or a notebook so) then computes the same keys without the source."""
    if SOURCE_DIGEST_ATTRIBUTE in getattr(fn, "__dict__", ()):
        return
    with contextlib.suppress(KeyPieceUnavailable):
        function_fingerprint(fn)


def _fingerprint(fn: Callable[..., Any], seen: dict[Any, int], path: str) -> tuple[Any, ...]:
    code = getattr(fn, "__code__", None)
    if code is None:
        raise KeyPieceUnavailable(f"the source of {path}", "it is not a Python function")
    if code in seen:  # recursion between helpers: refer to the first occurrence
        return ("seen", seen[code])
    seen[code] = len(seen)
    digest = _source_digest(fn)
    if digest is None:
        raise KeyPieceUnavailable(f"the source of {path}", "Python cannot find its source text")
    carry_source_digest(fn, digest)
    closure = []
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not yet filled
            closure.append((name, "empty"))
            continue
        closure.append((name, _closure_value(value, seen, f"the closure variable {name!r} of {path}")))
    callees = []
    module = getattr(fn, "__module__", None)
    namespace = getattr(fn, "__globals__", {})
    for name in sorted(_global_names(code)):
        target = namespace.get(name)
        target = getattr(target, "fn", target)  # a Task: follow its function
        if isinstance(target, types.FunctionType) and target.__module__ == module:
            callees.append((name, _fingerprint(target, seen, f"{name} (called by {path})")))
    return (digest, tuple(closure), tuple(callees))


def _closure_value(value: Any, seen: dict[Any, int], what: str) -> Any:
    inner = getattr(value, "fn", value)
    if isinstance(inner, types.FunctionType):
        return ("function", _fingerprint(inner, seen, what))
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if not _encodes(value):
        raise KeyPieceUnavailable(what, "it cannot be encoded (it refuses to be pickled)")
    return value


def _global_names(code: types.CodeType) -> set[str]:
    """Global names the code (and the functions, lambdas and comprehensions inside it) loads."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


INPUTS: CachePolicy = Inputs()
TASK_SOURCE: CachePolicy = TaskSource()
FLOW_PARAMETERS: CachePolicy = FlowParameters()
RUN_ID: CachePolicy = RunId()
NONE: CachePolicy = NoCache()
DEFAULT: CachePolicy = INPUTS + TASK_SOURCE + RUN_ID


def resolve_policy(
    cache_policy: Any, cache_key_fn: Callable[..., Any] | None, owner: str
) -> CachePolicy | None:
    """A task's policy from its options: `cache_policy`, or `cache_key_fn` as a policy."""
    if cache_policy is not None and cache_key_fn is not None:
        raise TypeError(
            f"{owner} sets both cache_key_fn and cache_policy; give one. A key function can be "
            "part of a policy: cache_policy=CacheKeyFnPolicy(fn) + INPUTS."
        )
    if cache_policy is None:
        return None if cache_key_fn is None else CacheKeyFnPolicy(cache_key_fn)
    if not isinstance(cache_policy, CachePolicy):
        raise TypeError(
            f"{owner}: cache_policy must be a cache policy such as INPUTS + TASK_SOURCE (from "
            f"ferroflow.cache_policies), not {cache_policy!r}."
        )
    return cache_policy


__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "ISOLATION_LEVELS",
    "NONE",
    "READ_COMMITTED",
    "RUN_ID",
    "SERIALIZABLE",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "KeyPieceUnavailable",
    "NoCache",
    "RunId",
    "TaskSource",
    "call_key_fn",
    "carry_source_digests",
    "check_isolation_level",
    "function_fingerprint",
]
