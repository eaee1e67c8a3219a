"""Prefect 2 code using settings objects: `FERROFLOW_X.value()`, `.name`, `temporary_settings`
with `updates`, `set_defaults` and `restore_defaults`, and the default result storage block."""

from pathlib import Path

import pytest

from ferroflow import flow, task
from ferroflow.exceptions import InvalidSettingError, StorageNotFoundError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.settings import (
    FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK,
    FERROFLOW_HOME,
    FERROFLOW_LOCAL_STORAGE_PATH,
    FERROFLOW_RESULTS_DEFAULT_SERIALIZER,
    FERROFLOW_RESULTS_PERSIST_BY_DEFAULT,
    SETTING_NAMES,
    SETTING_VARIABLES,
    Setting,
    get_current_settings,
    temporary_settings,
)


def test_every_setting_has_a_setting_object_named_after_its_variable():
    from ferroflow import settings

    assert sorted(setting.field for setting in SETTING_VARIABLES.values()) == sorted(SETTING_NAMES)
    for name, setting in SETTING_VARIABLES.items():
        assert getattr(settings, name) is setting
        assert setting.name == name
        assert name in settings.__all__


def test_a_setting_object_reads_the_value_in_force(isolated_home, monkeypatch):
    assert FERROFLOW_HOME.name == "FERROFLOW_HOME"
    assert FERROFLOW_HOME.value() == isolated_home
    assert FERROFLOW_LOCAL_STORAGE_PATH.value() == isolated_home / "storage"
    assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is False

    monkeypatch.setenv("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "true")
    assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True
    assert bool(FERROFLOW_RESULTS_PERSIST_BY_DEFAULT)
    assert get_current_settings().value_of(FERROFLOW_RESULTS_PERSIST_BY_DEFAULT) is True
    assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value_from(get_current_settings()) is True


def test_setting_objects_are_hashable_equal_by_setting_and_picklable():
    import pickle

    assert {FERROFLOW_HOME: 1}[Setting("home")] == 1
    assert pickle.loads(pickle.dumps(FERROFLOW_HOME)) == FERROFLOW_HOME
    assert repr(FERROFLOW_HOME) == "<FERROFLOW_HOME>"


def test_temporary_settings_with_updates():
    with temporary_settings(updates={FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: True}):
        assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True

        @flow
        def my_flow():
            return "persisted by default"

        state = my_flow(return_state=True)
        assert state.data.storage_key  # a persisted result
    assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is False


def test_temporary_settings_keywords_and_updates_mix():
    with temporary_settings(
        updates={FERROFLOW_RESULTS_DEFAULT_SERIALIZER: "json"}, results_persist_by_default=True
    ):
        assert FERROFLOW_RESULTS_DEFAULT_SERIALIZER.value() == "json"
        assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True


def test_set_defaults_applies_only_where_nothing_set_a_value(monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_DEFAULT_SERIALIZER", "compressed/pickle")
    with temporary_settings(
        set_defaults={
            FERROFLOW_RESULTS_DEFAULT_SERIALIZER: "json",
            FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: True,
        }
    ):
        assert FERROFLOW_RESULTS_DEFAULT_SERIALIZER.value() == "compressed/pickle"  # from the environment
        assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True
        with temporary_settings(set_defaults={FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: False}):
            assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True  # the outer block set it


def test_restore_defaults_ignores_the_environment_and_enclosing_blocks(monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_DEFAULT_SERIALIZER", "json")
    with temporary_settings(updates={FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: True}):
        with temporary_settings(
            restore_defaults={FERROFLOW_RESULTS_DEFAULT_SERIALIZER, FERROFLOW_RESULTS_PERSIST_BY_DEFAULT}
        ):
            assert FERROFLOW_RESULTS_DEFAULT_SERIALIZER.value() == "pickle"
            assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is False
            with temporary_settings(set_defaults={FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: True}):
                assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True  # a default again
        assert FERROFLOW_RESULTS_PERSIST_BY_DEFAULT.value() is True
    assert FERROFLOW_RESULTS_DEFAULT_SERIALIZER.value() == "json"


def test_restoring_the_home_default_moves_the_storage_path_with_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with temporary_settings(restore_defaults=[FERROFLOW_HOME]):
        assert FERROFLOW_HOME.value() == tmp_path / ".ferroflow"
        assert FERROFLOW_LOCAL_STORAGE_PATH.value() == tmp_path / ".ferroflow" / "storage"


def test_temporary_settings_refuses_invalid_values_naming_the_setting():
    with pytest.raises(InvalidSettingError, match="FERROFLOW_RESULTS_PERSIST_BY_DEFAULT"):
        with temporary_settings(updates={FERROFLOW_RESULTS_PERSIST_BY_DEFAULT: "maybe"}):
            pass


# --- the default result storage block -----------------------------------------------------------


def test_the_default_result_storage_block_keeps_results_of_flows_and_tasks_without_storage(tmp_path):
    LocalFileSystem(basepath=tmp_path / "team-results").save("team")

    @task(persist_result=True)
    def my_task():
        return "task data"

    @flow(persist_result=True)
    def my_flow():
        return my_task(return_state=True)

    with temporary_settings(updates={FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK: "local-file-system/team"}):
        assert FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK.value() == "local-file-system/team"
        task_state = my_flow()
    assert task_state.result() == "task data"
    assert task_state.data.storage.basepath == str(tmp_path / "team-results")
    assert len(list(Path(tmp_path / "team-results").iterdir())) == 2  # the task's and the flow's


def test_a_flow_s_own_result_storage_wins_over_the_default_block(tmp_path):
    LocalFileSystem(basepath=tmp_path / "team-results").save("team")

    @flow(persist_result=True, result_storage=LocalFileSystem(basepath=tmp_path / "own"))
    def my_flow():
        return "data"

    with temporary_settings(updates={FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK: "local-file-system/team"}):
        state = my_flow(return_state=True)
    assert state.data.storage.basepath == str(tmp_path / "own")


def test_a_default_block_that_names_no_saved_storage_is_a_clear_error():
    @flow(persist_result=True)
    def my_flow():
        return "data"

    with temporary_settings(updates={FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK: "local-file-system/nowhere"}):
        with pytest.raises(StorageNotFoundError) as error:
            my_flow()
    message = str(error.value)
    assert "FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK='local-file-system/nowhere'" in message
    assert "nowhere" in message and "save" in message.lower()


def test_a_default_block_that_is_not_a_slug_is_refused_when_read(monkeypatch):
    monkeypatch.setenv("FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK", "team")
    with pytest.raises(InvalidSettingError, match="'<storage-type>/<saved-name>'"):
        get_current_settings()
    monkeypatch.setenv("FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK", " ")
    assert FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK.value() is None
