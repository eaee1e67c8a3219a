"""Cache policies: composing parts, leaving inputs out, failing closed, TASK_SOURCE's reach."""

import importlib.util
import threading
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferroflow import flow, task
from ferroflow.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
)
from ferroflow.exceptions import CacheKeyWarning, PersistenceConfigurationError
from ferroflow.tasks import task_input_hash


def context(fn, parameters, flow_run_id="run-1", flow_parameters=None, name=None):
    """What a policy reads of a task run: the task, its parameters, its flow run."""
    return SimpleNamespace(
        task=SimpleNamespace(fn=fn, name=name or fn.__name__),
        parameters=parameters,
        flow_run=SimpleNamespace(id=flow_run_id, parameters=flow_parameters),
    )


def work(x, verbose=False):
    return x


def other_work(x, verbose=False):
    return x


# ------------------------------------------------------------------------------------------------
# Keys


def test_inputs_keys_follow_the_inputs_and_the_task():
    key = INPUTS.compute_key(context(work, {"x": 1}))
    assert key == INPUTS.compute_key(context(work, {"x": 1}))
    assert key != INPUTS.compute_key(context(work, {"x": 2}))
    # Every policy key names the task: another task with the same inputs has another entry.
    assert key != INPUTS.compute_key(context(other_work, {"x": 1}))
    assert len(key) == 32


def test_leaving_an_input_out():
    policy = INPUTS - "verbose"
    assert policy.compute_key(context(work, {"x": 1, "verbose": True})) == policy.compute_key(
        context(work, {"x": 1, "verbose": False})
    )
    assert INPUTS.compute_key(context(work, {"x": 1, "verbose": True})) != INPUTS.compute_key(
        context(work, {"x": 1, "verbose": False})
    )
    compound = INPUTS + TASK_SOURCE - "verbose"
    assert compound.compute_key(context(work, {"x": 1, "verbose": True})) == compound.compute_key(
        context(work, {"x": 1, "verbose": False})
    )
    with pytest.raises(TypeError, match="no INPUTS part"):
        TASK_SOURCE - "verbose"


def test_run_id_and_flow_parameters_scope_the_key():
    assert RUN_ID.compute_key(context(work, {}, flow_run_id="a")) != RUN_ID.compute_key(
        context(work, {}, flow_run_id="b")
    )
    assert FLOW_PARAMETERS.compute_key(context(work, {}, flow_parameters={"day": 1})) != (
        FLOW_PARAMETERS.compute_key(context(work, {}, flow_parameters={"day": 2}))
    )
    default = DEFAULT.compute_key(context(work, {"x": 1}, flow_run_id="a"))
    assert default != DEFAULT.compute_key(context(work, {"x": 1}, flow_run_id="b"))
    assert repr(DEFAULT) == "INPUTS + TASK_SOURCE + RUN_ID"


def test_none_caches_nothing_and_adds_nothing():
    assert NONE.compute_key(context(work, {"x": 1})) is None
    assert (NONE + INPUTS).compute_key(context(work, {"x": 1})) == (INPUTS + NONE).compute_key(
        context(work, {"x": 1})
    )


def test_configure_returns_a_copy_with_the_options():
    policy = INPUTS.configure(isolation_level="serializable", cache_storage="/tmp/cache")
    assert (policy.isolation_level, policy.cache_storage) == ("SERIALIZABLE", "/tmp/cache")
    assert INPUTS.isolation_level is None and INPUTS.cache_storage is None
    assert (policy + TASK_SOURCE).isolation_level == "SERIALIZABLE"
    assert (policy - "verbose").cache_storage == "/tmp/cache"
    with pytest.raises(ValueError, match="isolation_level='DIRTY' is not valid"):
        INPUTS.configure(isolation_level="DIRTY")
    with pytest.raises(ValueError, match="lock_lease_seconds=0 is not valid"):
        INPUTS.configure(lock_lease_seconds=0)


# Equal inputs give equal keys; inputs differing in type or value give different ones.
plain = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=5)
)
inputs = st.dictionaries(st.sampled_from(["a", "b", "c"]), plain | st.lists(plain, max_size=3), max_size=3)


def tagged(value):
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, list):
        return ("list", tuple(tagged(item) for item in value))
    return (type(value).__name__, value)


@settings(max_examples=200, deadline=None)
@given(inputs, inputs)
def test_policy_keys_are_equal_exactly_for_equal_typed_inputs(left, right):
    policy = INPUTS + TASK_SOURCE
    left_key = policy.compute_key(context(work, left))
    right_key = policy.compute_key(context(work, right))
    same = {name: tagged(value) for name, value in left.items()} == {
        name: tagged(value) for name, value in right.items()
    }
    assert (left_key == right_key) == same
    assert left_key == policy.compute_key(context(work, dict(reversed(list(left.items())))))


# ------------------------------------------------------------------------------------------------
# Failing closed


def test_a_part_that_cannot_hash_its_input_makes_the_call_uncached_with_one_warning():
    policy = INPUTS + TASK_SOURCE
    with pytest.warns(CacheKeyWarning) as caught:
        key = policy.compute_key(context(work, {"x": 1, "verbose": threading.Lock()}))
    assert key is None
    assert len(caught) == 1
    assert "the input 'verbose'" in str(caught[0].message)
    # Left out of the policy, the same input no longer matters.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (policy - "verbose").compute_key(context(work, {"x": 1, "verbose": threading.Lock()}))


def test_a_function_without_source_is_not_cached():
    namespace = {}
    exec("def generated(x):\n    return x\n", namespace)
    with pytest.warns(CacheKeyWarning, match="source of generated"):
        assert TASK_SOURCE.compute_key(context(namespace["generated"], {"x": 1})) is None
    # INPUTS alone does not need the source.
    assert INPUTS.compute_key(context(namespace["generated"], {"x": 1})) is not None


def test_flow_parameters_unknown_here_fail_closed():
    with pytest.warns(CacheKeyWarning, match="flow run's parameters"):
        assert FLOW_PARAMETERS.compute_key(context(work, {}, flow_parameters=None)) is None


def test_a_cache_key_fn_returning_none_in_a_compound_leaves_the_call_uncached():
    policy = CacheKeyFnPolicy(lambda: None) + INPUTS
    assert policy.compute_key(context(work, {"x": 1})) is None
    assert CacheKeyFnPolicy(lambda: "k").compute_key(context(work, {})) == "k"


# ------------------------------------------------------------------------------------------------
# TASK_SOURCE


def make_closure(factor):
    def scaled(x):
        return x * factor

    return scaled


def test_task_source_covers_the_closure():
    key = TASK_SOURCE.compute_key(context(make_closure(2), {}))
    assert key == TASK_SOURCE.compute_key(context(make_closure(2), {}))
    assert key != TASK_SOURCE.compute_key(context(make_closure(3), {}))


def test_an_unhashable_closure_value_fails_closed_naming_it():
    with pytest.warns(CacheKeyWarning, match="closure variable 'factor'"):
        assert TASK_SOURCE.compute_key(context(make_closure(threading.Lock()), {})) is None


def load_module(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_source_covers_the_module_level_functions_it_calls(tmp_path):
    body = "def main(x):\n    return helper(x)\n\n"
    first = load_module(
        tmp_path, "calls_a", body + "def helper(x):\n    return deeper(x)\n\ndef deeper(x):\n    return x\n"
    )
    same = load_module(
        tmp_path, "calls_a2", body + "def helper(x):\n    return deeper(x)\n\ndef deeper(x):\n    return x\n"
    )
    deeper_changed = load_module(
        tmp_path,
        "calls_b",
        body + "def helper(x):\n    return deeper(x)\n\ndef deeper(x):\n    return x + 1\n",
    )
    unrelated_changed = load_module(
        tmp_path,
        "calls_c",
        body
        + "def helper(x):\n    return deeper(x)\n\ndef deeper(x):\n    return x\n\ndef unused():\n    return 1\n",
    )

    def key(module):
        return TASK_SOURCE.compute_key(context(module.main, {}, name="main"))

    # Module names differ, so compare fingerprints rather than whole keys.
    from ferroflow.cache_policies import function_fingerprint

    assert function_fingerprint(first.main) == function_fingerprint(same.main)
    assert function_fingerprint(first.main) != function_fingerprint(deeper_changed.main)
    assert function_fingerprint(first.main) == function_fingerprint(unrelated_changed.main)
    assert key(first) is not None


def test_task_source_leaves_out_functions_of_other_modules():
    from ferroflow.cache_policies import function_fingerprint

    def uses_numpy(x):
        return np.sum(x)

    digest, closure, callees = function_fingerprint(uses_numpy)
    assert callees == ()


# ------------------------------------------------------------------------------------------------
# On tasks


def test_tasks_take_a_policy_and_cache_by_it():
    calls = []

    @task(cache_policy=INPUTS - "verbose")
    def double(x, verbose=False):
        calls.append(x)
        return x * 2

    @flow
    def run(x, verbose):
        return double(x, verbose=verbose, return_state=True)

    assert run(2, False).name == "Completed"
    state = run(2, True)
    assert state.name == "Cached" and state.result() == 4
    assert calls == [2]


def test_with_options_swaps_between_key_function_and_policy():
    @task(cache_key_fn=task_input_hash)
    def double(x):
        return x * 2

    with_policy = double.with_options(cache_policy=INPUTS)
    assert with_policy.cache_key_fn is None and with_policy.cache_policy is INPUTS
    back = with_policy.with_options(cache_key_fn=task_input_hash)
    assert back.cache_policy is None and back.cache_key_fn is task_input_hash
    with pytest.raises(TypeError, match="both cache_key_fn and cache_policy"):
        task(cache_key_fn=task_input_hash, cache_policy=INPUTS)(work)
    with pytest.raises(TypeError, match="cache_policy must be a cache policy"):
        task(cache_policy="INPUTS")(work)
    with pytest.raises(ValueError, match="isolation_level='sometimes' is not valid"):
        task(isolation_level="sometimes")(work)


def test_a_policy_needs_persisted_results():
    with pytest.raises(PersistenceConfigurationError, match="cache_policy"):
        task(cache_policy=INPUTS, persist_result=False)(work)
    task(cache_policy=NONE, persist_result=False)(work)  # caches nothing: needs nothing


def test_policies_are_cache_policies():
    for policy in (INPUTS, TASK_SOURCE, FLOW_PARAMETERS, RUN_ID, NONE, DEFAULT):
        assert isinstance(policy, CachePolicy)


def test_flow_parameters_key_tasks_by_the_flow_runs_parameters():
    calls = []

    @task(cache_policy=FLOW_PARAMETERS)
    def load():
        calls.append(1)
        return len(calls)

    @flow
    def daily(day):
        return load()

    assert (daily("mon"), daily("mon"), daily("tue")) == (1, 1, 2)


SENT_BY_VALUE = """
from ferroflow import task
from ferroflow.cache_policies import INPUTS, TASK_SOURCE


def helper(x):
    return x + 1


@task(cache_policy=INPUTS + TASK_SOURCE)
def step(x):
    return helper(x)
"""

READ_ELSEWHERE = """
import inspect, sys
import cloudpickle
from ferroflow.cache_policies import function_fingerprint

step = cloudpickle.loads(sys.stdin.buffer.read())
try:
    inspect.getsource(step.fn)
    source = "readable"
except OSError:
    source = "unreadable"
print(source)
print(repr(function_fingerprint(step.fn)))
"""


def test_a_task_sent_by_value_keeps_its_source_key_where_its_source_cannot_be_read(tmp_path, monkeypatch):
    # A cluster worker gets a task defined in __main__ (or here, a module it cannot import) by
    # value, without its source file: the digests made where the source was travel with it.
    import subprocess
    import sys

    import cloudpickle

    from ferroflow.cache_policies import carry_source_digests, function_fingerprint

    (tmp_path / "sent_by_value.py").write_text(SENT_BY_VALUE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("sent_by_value")
    here = function_fingerprint(module.step.fn)
    carry_source_digests(module.step.fn)
    cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps(module.step)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    (tmp_path / "sent_by_value.py").unlink()

    elsewhere = subprocess.run(
        [sys.executable, "-c", READ_ELSEWHERE], input=payload, capture_output=True, timeout=60, cwd=tmp_path
    )
    assert elsewhere.returncode == 0, elsewhere.stderr.decode()
    source, fingerprint = elsewhere.stdout.decode().splitlines()
    assert source == "unreadable"
    assert fingerprint == repr(here)
