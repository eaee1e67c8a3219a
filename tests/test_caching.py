"""Task caching: `cache_key_fn`, `cache_expiration`, `refresh_cache`, hits in this process and in
others, and cache entries whose result file is gone or damaged."""

import asyncio
import datetime
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ferroflow import flow, task
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import LiteralResult, PersistedResult
from ferroflow.results.blobs import read_blob_header
from ferroflow.runstore import default_store_url, open_store
from ferroflow.serializers import CompressedSerializer
from ferroflow.settings import temporary_settings
from ferroflow.tasks import (
    CachedResultUnavailableWarning,
    CacheKeyFunctionError,
    task_input_hash,
    task_input_hash_blake3,
)


def cached_counter(**options):
    """A cached task that records each time its body runs, and a flow calling it once."""
    calls = []

    @task(cache_key_fn=options.pop("cache_key_fn", task_input_hash), **options)
    def double(x):
        calls.append(x)
        return {"double": x * 2}

    @flow
    def run(x):
        return double(x, return_state=True)

    return calls, run


def test_a_second_call_with_the_same_inputs_is_a_cache_hit():
    calls, run = cached_counter()
    first = run(3)
    second = run(3)
    assert calls == [3]
    assert (first.name, second.name) == ("Completed", "Cached")
    assert second.is_completed()
    assert isinstance(second.data, PersistedResult)
    assert second.data.storage_key == first.data.storage_key
    assert second.result() == {"double": 6}
    assert second.message.startswith("Cache hit for key ")


def test_a_tiny_result_stored_uncompressed_by_its_compressed_serializer_is_a_cache_hit(recwarn):
    # gzip would grow the tiny result: its file holds the pickle, described as such.
    serializer = CompressedSerializer(serializer="pickle", compressionlib="gzip")
    calls, run = cached_counter(result_serializer=serializer, persist_result=True)
    first = run(3)
    path = Path(first.data.storage.basepath, first.data.storage_key)
    assert json.loads(read_blob_header(path)["serializer"])["type"] == "pickle"
    second = run(3)
    assert calls == [3] and second.name == "Cached"
    assert second.data.serializer_type == "compressed"
    assert second.result() == {"double": 6}
    assert not recwarn.list


def test_the_blake3_key_function_caches_as_task_input_hash_does_under_its_own_keys():
    calls, run = cached_counter(cache_key_fn=task_input_hash_blake3)
    first, second = run(3), run(3)
    assert calls == [3]
    assert (first.name, second.name) == ("Completed", "Cached")
    assert second.result() == {"double": 6}
    assert re.fullmatch(r"Cache hit for key '[0-9a-f]{64}'\.", second.message)
    # Its entries are not task_input_hash's: the same call under the XXH3-128 key misses.
    fast_calls, fast_run = cached_counter()
    assert fast_run(3).name == "Completed" and fast_calls == [3]


def test_different_inputs_miss():
    calls, run = cached_counter()
    assert run(1).result() == {"double": 2}
    assert run(2).result() == {"double": 4}
    assert run(1).name == "Cached"
    assert calls == [1, 2]


def test_the_spec_example_with_a_key_function_without_arguments():
    calls = []

    @task(cache_key_fn=lambda: "always", cache_expiration=datetime.timedelta(seconds=20))
    def my_task():
        calls.append(1)
        return "hello world!"

    @flow
    def my_flow():
        return my_task(return_state=True)

    assert my_flow().name == "Completed"
    cached = my_flow()
    assert cached.name == "Cached" and cached.result() == "hello world!"
    assert calls == [1]


def test_key_functions_get_every_parameter_with_defaults_applied_whatever_the_signature():
    seen = []

    def remember_parameters(context, parameters):
        seen.append(dict(parameters))
        return None

    @task(cache_key_fn=remember_parameters)
    def plain(a, b=2):
        return a

    @task(cache_key_fn=remember_parameters)
    def keyword_only(a, *, scale=10):
        return a

    @flow
    def my_flow():
        plain(1)
        plain(1, b=3)
        keyword_only(4)

    my_flow()
    assert seen == [{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 4, "scale": 10}]


def test_key_functions_may_take_the_context_alone_or_with_the_parameters():
    seen = []

    def by_context(context):
        seen.append(context.task.name)
        return "by-context"

    def by_parameters(context, parameters):
        seen.append(dict(parameters))
        return f"by-parameters-{parameters['x']}"

    @task(cache_key_fn=by_context)
    def first(x):
        return x

    @task(cache_key_fn=by_parameters)
    def second(x):
        return x

    @flow
    def my_flow():
        return first(1), second(x=2)

    assert my_flow() == (1, 2)
    assert seen == ["first", {"x": 2}]
    with open_store(default_store_url()) as store:
        assert store.get_cache_entry("by-parameters-2") is not None


def test_entries_expire():
    calls, run = cached_counter(cache_expiration=datetime.timedelta(milliseconds=50))
    run(1)
    assert run(1).name == "Cached"
    time.sleep(0.1)
    assert run(1).name == "Completed"
    assert calls == [1, 1]


def test_refresh_cache_option_recomputes_and_replaces_the_entry():
    outputs = iter(["old", "new"])

    @task(cache_key_fn=lambda: "refreshed")
    def produce():
        return next(outputs)

    @flow
    def my_flow(refresh):
        return produce.with_options(refresh_cache=refresh)()

    assert my_flow(False) == "old"
    assert my_flow(True) == "new"  # ran again although an entry existed...
    assert my_flow(False) == "new"  # ...and replaced it


def test_refresh_cache_setting_recomputes_unless_the_task_says_otherwise():
    calls, run = cached_counter()
    run(1)
    with temporary_settings(tasks_refresh_cache=True):
        assert run(1).name == "Completed"
    assert calls == [1, 1]
    _, pinned = cached_counter(refresh_cache=False)
    pinned(5)
    with temporary_settings(tasks_refresh_cache=True):
        assert pinned(5).name == "Cached"


def test_large_numpy_inputs_are_keyed_by_their_content():
    calls, run = cached_counter()
    array = np.arange(1_000_000, dtype=np.float64)
    run(array)
    assert run(array.copy()).name == "Cached"
    changed = array.copy()
    changed[-1] = -1
    assert run(changed).name == "Completed"
    assert len(calls) == 2


def test_a_literal_result_is_cached_inline():
    calls = []

    @task(cache_key_fn=lambda: "literal")
    def nothing():
        calls.append(1)

    @flow
    def my_flow():
        return nothing(return_state=True)

    my_flow()
    state = my_flow()
    assert state.name == "Cached" and isinstance(state.data, LiteralResult)
    assert state.result() is None and calls == [1]


def test_a_missing_result_file_recomputes_with_a_warning_and_replaces_the_entry():
    calls, run = cached_counter()
    first = run(4)
    Path(first.data.storage.basepath, first.data.storage_key).unlink()
    with pytest.warns(CachedResultUnavailableWarning, match="'double'.*runs again"):
        again = run(4)
    assert again.name == "Completed" and again.result() == {"double": 8}
    assert run(4).data.storage_key == again.data.storage_key  # the new file is the entry now
    assert calls == [4, 4]


def test_a_corrupted_result_file_recomputes_with_a_warning():
    calls, run = cached_counter()
    first = run(4)
    path = Path(first.data.storage.basepath, first.data.storage_key)
    damaged = bytearray(path.read_bytes())
    damaged[-3] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.warns(CachedResultUnavailableWarning):
        assert run(4).result() == {"double": 8}
    assert calls == [4, 4]


def test_a_key_function_that_raises_fails_the_run_naming_the_task():
    @task(cache_key_fn=lambda context, parameters: 1 / 0)
    def fragile():
        raise AssertionError("the task must not run")

    states = []

    @flow
    def my_flow():
        states.append(fragile(return_state=True))

    assert my_flow(return_state=True).is_failed()
    (state,) = states
    assert state.is_failed()
    with pytest.raises(CacheKeyFunctionError, match="task 'fragile' raised ZeroDivisionError") as error:
        state.result()
    assert isinstance(error.value.__cause__, ZeroDivisionError)


def test_a_key_function_returning_a_non_string_fails_the_run():
    @task(cache_key_fn=lambda: 42)
    def numbered():
        raise AssertionError("the task must not run")

    @flow
    def my_flow():
        numbered()

    with pytest.raises(
        CacheKeyFunctionError, match="task 'numbered' returned int 42; a cache key must be a string"
    ):
        my_flow()


@pytest.mark.parametrize(
    "key", ["\ud800", "name-\udcff.csv", "ключ-\udfff"], ids=["lone", "escaped byte", "mixed"]
)
def test_a_key_function_returning_text_that_is_not_valid_unicode_fails_the_run(key):
    @task(cache_key_fn=lambda: key)
    def keyed():
        raise AssertionError("the task must not run")

    @flow
    def my_flow():
        keyed()

    with pytest.raises(
        CacheKeyFunctionError,
        match=r"task 'keyed' returned a string that is not valid Unicode .*lone surrogate",
    ):
        my_flow()


def test_a_key_function_returning_any_valid_unicode_caches():
    calls, run = cached_counter(cache_key_fn=lambda: "ключ-🔑-鍵")
    run(1)
    assert run(1).name == "Cached"
    assert calls == [1]


def test_a_key_function_returning_none_runs_the_task_uncached():
    calls, run = cached_counter(cache_key_fn=lambda: None)
    run(1)
    assert run(1).name == "Completed"
    assert calls == [1, 1]


def test_async_tasks_are_cached():
    calls = []

    @task(cache_key_fn=task_input_hash)
    async def fetch(x):
        calls.append(x)
        return x + 1

    @flow
    async def my_flow():
        return await fetch(1, return_state=True)

    asyncio.run(my_flow())
    state = asyncio.run(my_flow())
    assert state.name == "Cached" and calls == [1]


def test_submitted_and_mapped_runs_share_the_cache():
    calls = []

    @task(cache_key_fn=task_input_hash)
    def square(x):
        calls.append(x)
        return x * x

    @flow
    def my_flow():
        return [future.result() for future in square.map([1, 2, 2, 3])]

    my_flow()
    assert my_flow() == [1, 4, 4, 9]
    assert sorted(set(calls)) == [1, 2, 3] and len(calls) <= 4


# --- other processes ------------------------------------------------------------------------------

SCRIPT = """
import sys
from pathlib import Path
from ferroflow import flow, task
from ferroflow.tasks import task_input_hash

marker = Path(sys.argv[1])

@task(cache_key_fn=task_input_hash)
def slow_square(x):
    with marker.open("a") as file:
        file.write(f"ran {x}\\n")
    return x * x

@flow
def squares(n):
    return [slow_square(i) for i in range(n)]

print(sum(squares(int(sys.argv[2]))))
"""


def run_script(script: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.strip()


def test_a_cache_entry_is_found_by_another_process(tmp_path):
    script = tmp_path / "squares.py"
    script.write_text(textwrap.dedent(SCRIPT))
    marker = tmp_path / "ran.txt"
    assert finished(run_script(script, str(marker), "3")) == "5"
    assert finished(run_script(script, str(marker), "4")) == "14"
    # The second process ran only the new input; the others came from the first one's cache.
    assert marker.read_text().splitlines() == ["ran 0", "ran 1", "ran 2", "ran 3"]


def test_two_processes_caching_in_one_store_at_once(tmp_path):
    script = tmp_path / "squares.py"
    script.write_text(textwrap.dedent(SCRIPT))
    markers = [tmp_path / "a.txt", tmp_path / "b.txt"]
    processes = [run_script(script, str(marker), "40") for marker in markers]
    assert [finished(process) for process in processes] == [str(sum(i * i for i in range(40)))] * 2
    # Both may compute an input before the other cached it; afterwards every input is cached.
    third = tmp_path / "c.txt"
    assert finished(run_script(script, str(third), "40")) == str(sum(i * i for i in range(40)))
    assert not third.exists()


def test_cache_commands_see_and_clear_the_engines_entries(monkeypatch):
    from click.testing import CliRunner

    from ferroflow.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    calls, run = cached_counter()
    run(7)
    runner = CliRunner()
    (entry,) = json.loads(runner.invoke(app, ["cache", "ls", "--json"]).output)
    assert entry["task_name"] == "double" and entry["result"]["kind"] == "persisted"
    with open_store(default_store_url()) as store:
        assert entry["key"] == store.list_cache_entries()[0].key
    cleared = runner.invoke(app, ["cache", "clear", "--task", "double", "--yes"])
    assert cleared.exit_code == 0 and "Deleted 1 cache entry" in cleared.output
    assert run(7).name == "Completed" and calls == [7, 7]


def test_a_cache_entry_written_by_another_serializer_than_the_task_now_uses_is_recomputed(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    calls = []

    def define(serializer):
        @task(cache_key_fn=lambda: "same-key", result_serializer=serializer, result_storage=storage)
        def produce():
            calls.append(serializer)
            return {"by": serializer}

        @flow
        def run():
            return produce(return_state=True)

        return run

    assert define("pickle")().result() == {"by": "pickle"}
    assert define("pickle")().name == "Cached"
    with pytest.warns(
        CachedResultUnavailableWarning,
        match="written by the 'pickle' serializer, and the task's result serializer is now 'json'",
    ):
        state = define("json")()
    assert state.name == "Completed" and state.result() == {"by": "json"}
    assert define("json")().name == "Cached"  # the new entry replaced the old one
    assert calls == ["pickle", "json"]
