import dataclasses
import datetime
import decimal
import enum
import functools
import importlib.util
import math
import pathlib
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from types import MappingProxyType, SimpleNamespace

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferroflow import _core
from ferroflow.cache_keys import canonical_encoding, hash_canonical, task_identity, task_input_hash
from ferroflow.exceptions import CacheKeyWarning

def u64(n):
    return struct.pack("<Q", n)


def text(value):
    data = value.encode()
    return u64(len(data)) + data


def task_context(fn, name=None):
    return SimpleNamespace(task=SimpleNamespace(fn=fn, name=name or fn.__name__))


def double(x):
    return 2 * x


# ------------------------------------------------------------------------------------------------
# The canonical encoding


@pytest.mark.parametrize(("value", "expected"), [
    (None, b"N"),
    (True, b"T"),
    (False, b"F"),
    (0, b"i" + u64(1) + b"\x00"),
    (-1, b"i" + u64(1) + b"\xff"),
    (255, b"i" + u64(2) + b"\xff\x00"),
    (2**64, b"i" + u64(9) + b"\x00" * 8 + b"\x01"),
    (1.5, b"f" + struct.pack("<d", 1.5)),
    (1 + 2j, b"c" + struct.pack("<dd", 1.0, 2.0)),
    ("hé", b"s" + u64(3) + b"h\xc3\xa9"),
    (b"ab", b"b" + u64(2) + b"ab"),
    (bytearray(b"ab"), b"b" + u64(2) + b"ab"),
    ([1, "a"], b"l" + u64(2) + b"i" + u64(1) + b"\x01" + b"s" + u64(1) + b"a"),
    ((None,), b"t" + u64(1) + b"N"),
    ({"b": None, "a": True}, b"d" + u64(2) + b"s" + u64(1) + b"a" + b"T" + b"s" + u64(1) + b"b" + b"N"),
    ({3, 1, 2}, b"S" + u64(3) + b"".join(b"i" + u64(1) + bytes([n]) for n in (1, 2, 3))),
    (datetime.date(2024, 5, 1), b"r" + text("datetime.date") + text("2024-05-01")),
    (decimal.Decimal("1.10"), b"r" + text("decimal.Decimal") + text("1.10")),
    (pathlib.PurePosixPath("/data/in.csv"), b"r" + text("pathlib.PurePath") + text("/data/in.csv")),
])
def test_known_encodings(value, expected):
    assert canonical_encoding(value) == expected


def test_a_numpy_array_is_its_dtype_shape_and_raw_memory():
    array = np.arange(6, dtype="<i4").reshape(2, 3)
    expected = b"A" + text("<i4") + u64(2) + u64(2) + u64(3) + u64(24) + array.tobytes()
    assert canonical_encoding(array) == expected


def test_dataclasses_models_and_enums_are_encoded_by_their_fields():
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    class Model(pydantic.BaseModel):
        x: int
        y: int

    class Color(enum.Enum):
        RED = "red"

    point_name = f"{__name__}.{Point.__qualname__}"
    assert canonical_encoding(Point(1, 2)) == (
        b"D" + text(point_name) + u64(2) + text("x") + canonical_encoding(1) + text("y") + canonical_encoding(2))
    assert canonical_encoding(Model(x=1, y=2)).startswith(b"M" + text(f"{__name__}.{Model.__qualname__}"))
    assert canonical_encoding(Model(x=1, y=2)) != canonical_encoding(Model(x=2, y=1))
    assert canonical_encoding(Color.RED) == b"E" + text(f"{__name__}.{Color.__qualname__}") + canonical_encoding("red")


def test_equal_inputs_encode_alike_whatever_their_order():
    assert canonical_encoding({"a": 1, "b": [1, 2]}) == canonical_encoding({"b": [1, 2], "a": 1})
    assert canonical_encoding({"x", "y", "z"}) == canonical_encoding(frozenset(["z", "y", "x"]))
    assert canonical_encoding(float("nan")) == canonical_encoding(-float("nan")) == canonical_encoding(math.nan)
    assert canonical_encoding(b"ab") == canonical_encoding(memoryview(b"ab"))


@pytest.mark.parametrize(("left", "right"), [
    (1, 1.0), (1, True), (1, "1"), ([1, 2], (1, 2)), ({"a": 1}, {"a": 2}), ({"a": 1}, {"b": 1}),
    (["ab", "c"], ["a", "bc"]), ([[1], 2], [1, [2]]), (b"1", "1"), (0.0, -0.0),
    (np.zeros(4, dtype="<f4"), np.zeros(4, dtype="<i4")), (np.zeros((2, 2)), np.zeros(4)),
])
def test_different_inputs_encode_differently(left, right):
    assert canonical_encoding(left) != canonical_encoding(right)


def test_numpy_arrays_of_any_layout_encode_as_their_c_order_values():
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    assert canonical_encoding(base[:, ::2]) == canonical_encoding(np.ascontiguousarray(base[:, ::2]))
    assert canonical_encoding(np.asfortranarray(base)) == canonical_encoding(base)


def test_numpy_scalars_structured_datetime_and_object_arrays_are_hashable():
    structured = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])
    dates = np.array(["2024-05-01", "2024-05-02"], dtype="datetime64[D]")
    objects = np.array([{"k": 1}, None], dtype=object)
    for value in (np.float32(1.5), structured, dates, objects):
        assert canonical_encoding(value) == canonical_encoding(value.copy())
    assert canonical_encoding(np.float64(1.5)) != canonical_encoding(1.5)  # the type is part of the input
    assert canonical_encoding(objects) != canonical_encoding(np.array([{"k": 2}, None], dtype=object))


def test_other_objects_fall_back_to_their_pickle():
    value = SimpleNamespace(a=1)
    encoded = canonical_encoding(value)
    assert encoded[:1] == b"p"
    assert encoded == canonical_encoding(SimpleNamespace(a=1))
    assert encoded != canonical_encoding(SimpleNamespace(a=2))


# ------------------------------------------------------------------------------------------------
# Hashing


def test_a_numpy_array_is_hashed_in_place_with_the_digest_of_its_bytes():
    array = np.random.default_rng(0).random((1024, 1024))  # 8 MiB
    header = b"A" + text("<f8") + u64(2) + u64(1024) + u64(1024) + u64(array.nbytes)
    hasher = _core.Hasher("blake3")
    hasher.update_many([b"ferroflow.task_input_hash\x00\x01", header, array.tobytes()])

    tracemalloc.start()
    try:
        digest = hash_canonical(array)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hasher.hexdigest()
    assert peak < array.nbytes // 16  # no copy of the array was made


def test_task_input_hash_follows_the_inputs():
    context = task_context(double)
    key = task_input_hash(context, {"x": 1, "y": [1, 2]})
    assert isinstance(key, str) and len(key) == 64 and int(key, 16) >= 0
    assert task_input_hash(context, {"y": [1, 2], "x": 1}) == key
    assert task_input_hash(context, {"x": 2, "y": [1, 2]}) != key
    assert task_input_hash(context, {}) != key


def test_task_input_hash_follows_the_task_code_not_its_display_name(tmp_path):
    def load(version, body):
        path = tmp_path / f"tasks_v{version}.py"
        path.write_text(textwrap.dedent(body))
        spec = importlib.util.spec_from_file_location("user_tasks", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.work

    decorate = "import functools\ndef task(**options):\n    return lambda fn: functools.wraps(fn)(lambda x: fn(x))\n"
    original = load(1, decorate + "@task(retries=1)\ndef work(x):\n    return x + 1\n")
    edited = load(2, decorate + "@task(retries=1)\ndef work(x):\n    return x + 2\n")
    reformatted = load(3, decorate.replace("\n", "\r\n") + "@task(retries=1)\r\ndef work(x):\r\n    return x + 1\r\n")
    redecorated = load(4, decorate + "@task(\n    retries=5,\n)\ndef work(x):\n    return x + 1\n")
    key = task_input_hash(task_context(original), {"x": 1})
    assert task_input_hash(task_context(original, name="renamed"), {"x": 1}) == key
    assert task_input_hash(task_context(edited), {"x": 1}) != key
    assert task_input_hash(task_context(reformatted), {"x": 1}) == key  # line endings do not count
    assert task_input_hash(task_context(redecorated), {"x": 1}) == key  # nor the decorator's options


def test_the_task_is_known_by_its_unwrapped_function_and_its_source():
    @functools.wraps(double)
    def wrapper(*args, **kwargs):
        return double(*args, **kwargs)

    name, digest = task_identity(SimpleNamespace(fn=wrapper, name="double"))
    assert name == f"{__name__}.double" and digest is not None
    # No source to read: known by name only.
    assert task_identity(SimpleNamespace(fn=len, name="length")) == ("builtins.len", None)
    assert task_identity(SimpleNamespace(fn=functools.partial(double, 1), name="partial-double"))[0] == "partial-double"


class Unpicklable:
    def __reduce__(self):
        raise TypeError("sockets cannot be pickled")


def test_task_input_hash_is_the_digest_of_the_identity_and_inputs_pair():
    """The identity's encoding is made once per task and reused: the key must stay the digest of
    the whole (identity, inputs) pair, with any kind of parameters mapping."""
    context = task_context(double)
    parameters = {"x": 1, "y": [2.5, "three"]}
    expected = hash_canonical((task_identity(context.task), parameters))
    assert task_input_hash(context, parameters) == expected
    assert task_input_hash(context, parameters) == expected  # from the reused prefix
    assert task_input_hash(context, MappingProxyType(parameters)) == expected


def test_an_input_that_cannot_be_hashed_disables_caching_with_a_warning():
    with pytest.warns(CacheKeyWarning, match=r"input 'conn' of task 'double'.*cannot be pickled.*cache_key_fn"):
        assert task_input_hash(task_context(double), {"x": 1, "conn": Unpicklable()}) is None
    cyclic = []
    cyclic.append(cyclic)
    with pytest.warns(CacheKeyWarning, match=r"input 'items'.*contains itself"):
        assert task_input_hash(task_context(double), {"items": cyclic}) is None


STABILITY_SCRIPT = textwrap.dedent("""
    import sys
    from types import SimpleNamespace
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from user_tasks import work
    from ferroflow.cache_keys import task_input_hash
    context = SimpleNamespace(task=SimpleNamespace(fn=work, name="work"))
    parameters = {"tags": {"alpha", "beta", "gamma", "delta"}, "n": 3, "weights": np.arange(5.0),
                  "options": {"z": None, "a": (1.5, b"raw")}}
    print(task_input_hash(context, parameters))
""")


def test_the_same_inputs_give_the_same_key_in_other_processes(tmp_path):
    (tmp_path / "user_tasks.py").write_text("def work(tags, n, weights, options):\n    return n\n")
    keys = {
        subprocess.run([sys.executable, "-c", STABILITY_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                       check=True, env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(keys) == 1
    spec = importlib.util.spec_from_file_location("user_tasks", tmp_path / "user_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parameters = {"options": {"a": (1.5, b"raw"), "z": None}, "weights": np.arange(5.0), "n": 3,
                  "tags": {"delta", "gamma", "beta", "alpha"}}
    assert task_input_hash(task_context(module.work), parameters) == keys.pop()  # and in this one


# Digests of encoding version 1, pinned: if one changes, every user's cache is invalidated, so a
# change here must come with a new ENCODING_VERSION and a note in docs/runstore.md.
@pytest.mark.parametrize(("value", "digest"), [
    (None, "b661ff2079ed631c2b48ecfe5bd702206c1e3807a7cb5547f14364b2e5b30529"),
    ("hello", "fd53203aff089a8d2fda56402804515158105363f65ab5011cc88dcc1afe3b78"),
    ({"a": 1, "b": [1.5, "x", None]}, "81548dd56c82377db1059400ecaa6a2ced822d09f3f916ccf6620519ad81da5a"),
    ({3, 1, 2}, "a94fab3c22740753862b635a723d04c2623f0b72892fea8689e50a34178b3e57"),
    (np.arange(4, dtype="<i8"), "3c459c1adc2e34bb588d2f67a89b65340300c4f0f7844e77797c391f04c92bea"),
    ((b"\x00" * 5000,), "94a79012aafa5503070ef103f32598dd633ec1d7f718c5328604e42a8901b1aa"),
])
def test_known_digests(value, digest):
    assert hash_canonical(value) == digest
    # Streaming the parts gives the digest of the whole: large buffers are not joined first.
    whole = _core.Hasher("blake3")
    whole.update(b"ferroflow.task_input_hash\x00\x01" + canonical_encoding(value))
    assert whole.hexdigest() == digest


# ------------------------------------------------------------------------------------------------
# Properties: order never matters, and different values never share an encoding

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4) | st.tuples(children, children)
                      | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4)
                      | st.frozensets(scalars, max_size=4)),
    max_leaves=12,
)


def typed(value):
    """The value as the encoding sees it: type and content, with float bits exact and no order."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, bytes | bytearray):
        return ("bytes", bytes(value))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((typed(key), typed(item)) for key, item in value.items()))
    if isinstance(value, frozenset | set):
        return ("set", frozenset(typed(item) for item in value))
    return (type(value).__name__, value)


def reordered(value):
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list | tuple):
        return type(value)(reordered(item) for item in value)
    return value


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_the_encoding_is_equal_exactly_for_equal_typed_values(left, right):
    assert canonical_encoding(left) == canonical_encoding(reordered(left))
    assert (canonical_encoding(left) == canonical_encoding(right)) == (typed(left) == typed(right))
