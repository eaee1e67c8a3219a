"""Prefect 2 code using storage blocks: path-like base paths, and the storage methods awaited in
async code and called directly in sync code. Each test is the user's code with `prefect`
renamed to `ferroflow`."""

import os
from pathlib import Path

import pytest

from ferroflow import flow, task
from ferroflow.filesystems import LocalFileSystem


def test_basepath_accepts_a_path(tmp_path):
    storage = LocalFileSystem(basepath=Path(tmp_path) / "results")
    storage.write_path("hello", b"world")
    assert (tmp_path / "results" / "hello").read_bytes() == b"world"
    assert storage.basepath == str(tmp_path / "results")


class ResultsFolder(os.PathLike):
    """A user's own path-like object (anything with __fspath__)."""

    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return str(self.path)


def test_basepath_accepts_any_path_like_object_and_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert LocalFileSystem(basepath=ResultsFolder(tmp_path / "mine")).basepath == str(tmp_path / "mine")
    assert LocalFileSystem(basepath=Path("~/results")).basepath == str(tmp_path / "results")
    assert LocalFileSystem(basepath="~/results").basepath == str(tmp_path / "results")


def test_a_flow_persists_into_a_path_basepath(tmp_path):
    @flow(result_storage=LocalFileSystem(basepath=tmp_path / "flow-results"), persist_result=True)
    def my_flow():
        return "pretend this is data"

    assert my_flow() == "pretend this is data"
    assert len(list((tmp_path / "flow-results").iterdir())) == 1


def test_basepath_still_refuses_what_is_not_a_path():
    with pytest.raises(ValueError, match="valid string"):
        LocalFileSystem(basepath=42)


async def test_storage_methods_are_awaited_in_async_code(tmp_path):
    storage = LocalFileSystem(basepath=tmp_path / "async")
    slug = await storage.save("async-dev")
    path = await storage.write_path("notes/readme", b"hello")
    content = await storage.read_path("notes/readme")

    assert slug == "local-file-system/async-dev"
    assert path == str(tmp_path / "async" / "notes" / "readme")
    assert content == b"hello"
    assert LocalFileSystem.load("async-dev") == storage


def test_storage_methods_return_directly_in_sync_code(tmp_path):
    storage = LocalFileSystem(basepath=tmp_path / "sync")
    assert storage.save("sync-dev") == "local-file-system/sync-dev"
    storage.write_path("notes/readme", b"hello")
    assert storage.read_path("notes/readme") == b"hello"


def test_async_flows_await_storage_and_their_sync_tasks_call_it_directly(tmp_path):
    import asyncio

    storage = LocalFileSystem(basepath=tmp_path / "mixed")

    @task
    def write_in_a_sync_task():
        return storage.write_path("from-task", b"sync")

    @flow
    async def my_flow():
        await storage.write_path("from-flow", b"async")
        written = write_in_a_sync_task()
        return written, await storage.read_path("from-flow")

    written, content = asyncio.run(my_flow())
    assert written == str(tmp_path / "mixed" / "from-task")
    assert content == b"async"
    assert (tmp_path / "mixed" / "from-task").read_bytes() == b"sync"
