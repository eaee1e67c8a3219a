import contextlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferroflow import flow
from ferroflow.cli import app
from ferroflow.exceptions import InvalidSettingError
from ferroflow.runstore import default_store_url, open_store
from ferroflow.settings import (
    RUNSTORE_URL_FORMS,
    adopted_settings,
    get_current_settings,
    profiles_path,
    read_profile,
    setting_sources,
    temporary_settings,
    validate_setting,
    write_profile,
)


def write_toml(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_defaults_follow_the_home_folder(isolated_home):
    settings = get_current_settings()
    assert settings.home == isolated_home
    assert settings.local_storage_path == isolated_home / "storage"
    assert settings.results_persist_by_default is False
    assert settings.results_default_serializer == "pickle"
    assert settings.async_fetch_state_result is False
    assert settings.results_fsync is False
    assert settings.tasks_refresh_cache is False
    assert set(setting_sources().values()) == {"default", "env"}  # home comes from the env


def test_home_and_storage_path_expand_the_user_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FERROFLOW_HOME", "~/ff")
    monkeypatch.setenv("FERROFLOW_LOCAL_STORAGE_PATH", "~/results")
    settings = get_current_settings()
    assert settings.home == tmp_path / "ff"
    assert settings.local_storage_path == tmp_path / "results"


def test_precedence_default_then_profile_then_env_then_temporary(isolated_home, monkeypatch):
    key = "FERROFLOW_RESULTS_DEFAULT_SERIALIZER"
    assert get_current_settings().results_default_serializer == "pickle"
    assert setting_sources()["results_default_serializer"] == "default"

    write_profile({key: "json"})
    assert get_current_settings().results_default_serializer == "json"
    assert setting_sources()["results_default_serializer"] == "profile"

    monkeypatch.setenv(key, "compressed/json")
    assert get_current_settings().results_default_serializer == "compressed/json"
    assert setting_sources()["results_default_serializer"] == "env"

    with temporary_settings(results_default_serializer="compressed/pickle"):
        assert get_current_settings().results_default_serializer == "compressed/pickle"
        assert setting_sources()["results_default_serializer"] == "temporary"
    assert get_current_settings().results_default_serializer == "compressed/json"


def test_the_cached_settings_are_reused_until_something_changes(isolated_home, monkeypatch):
    first = get_current_settings()
    assert get_current_settings() is first

    monkeypatch.setenv("FERROFLOW_RESULTS_FSYNC", "true")
    changed_by_env = get_current_settings()
    assert changed_by_env.results_fsync is True

    write_profile({"FERROFLOW_TASKS_REFRESH_CACHE": "true"})
    assert get_current_settings().tasks_refresh_cache is True
    write_profile({"FERROFLOW_TASKS_REFRESH_CACHE": "false", "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT": "1"})
    settings = get_current_settings()
    assert settings.tasks_refresh_cache is False
    assert settings.results_persist_by_default is True


def test_temporary_settings_nest_validate_and_restore():
    with temporary_settings(results_fsync=True) as outer:
        assert get_current_settings() is outer
        with temporary_settings(FERROFLOW_RESULTS_PERSIST_BY_DEFAULT="yes") as inner:
            assert inner.results_fsync is True
            assert inner.results_persist_by_default is True
        assert get_current_settings().results_persist_by_default is False
    assert get_current_settings().results_fsync is False


def test_adopted_settings_put_another_process_settings_in_force_and_reuse_them(tmp_path):
    with temporary_settings(home=tmp_path / "flow", results_fsync=True) as sent:
        pass
    with temporary_settings(**sent.model_dump()) as expected:
        pass
    with adopted_settings(sent.model_copy()) as first:
        assert get_current_settings() is first
        assert first == expected
        assert first.model_fields_set == expected.model_fields_set
        # an enclosing override set every setting: a nested default changes none
        with temporary_settings(set_defaults={"results_fsync": False}):
            assert get_current_settings().results_fsync is True
    assert get_current_settings().results_fsync is False
    with adopted_settings(sent.model_copy()) as again:
        assert again is first  # the same settings: validated once
    with temporary_settings(home=tmp_path / "other") as other_sent:
        pass
    with adopted_settings(other_sent) as other:
        assert other.home == tmp_path / "other"
        assert other.local_storage_path == tmp_path / "other" / "storage"
    assert get_current_settings().home != tmp_path / "other"


def test_temporary_home_moves_a_default_storage_path(tmp_path):
    with temporary_settings(home=tmp_path / "other") as settings:
        assert settings.local_storage_path == tmp_path / "other" / "storage"


def test_temporary_settings_refuse_unknown_keys_and_bad_values():
    with pytest.raises(InvalidSettingError) as unknown:
        with temporary_settings(results_fsnyc=True):
            pass
    assert "Unknown setting 'results_fsnyc'" in str(unknown.value)
    assert "FERROFLOW_RESULTS_FSYNC" in str(unknown.value)

    with pytest.raises(InvalidSettingError, match=r"FERROFLOW_RESULTS_FSYNC='maybe'.*valid boolean"):
        with temporary_settings(results_fsync="maybe"):
            pass


def test_a_bad_environment_value_names_the_variable_and_its_source(monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_FSYNC", "maybe")
    with pytest.raises(InvalidSettingError) as error:
        get_current_settings()
    assert "FERROFLOW_RESULTS_FSYNC='maybe' (from the environment)" in str(error.value)


def test_a_bad_profile_value_names_the_profile_file(isolated_home):
    write_toml(
        isolated_home / "profiles.toml",
        'active = "default"\n[profiles.default]\nFERROFLOW_RESULTS_FSYNC = "sometimes"\n',
    )
    with pytest.raises(InvalidSettingError) as error:
        get_current_settings()
    assert f"(from the profile file {isolated_home / 'profiles.toml'})" in str(error.value)


def test_a_broken_profile_file_is_named(isolated_home):
    write_toml(isolated_home / "profiles.toml", "[profiles.default\n")
    with pytest.raises(InvalidSettingError, match="is not valid TOML"):
        get_current_settings()


def test_unknown_profile_entries_are_ignored_with_a_warning(isolated_home):
    write_toml(isolated_home / "profiles.toml", '[profiles.default]\nFERROFLOW_NOPE = "1"\n')
    with pytest.warns(UserWarning, match="Ignoring 'FERROFLOW_NOPE'"):
        assert get_current_settings().results_fsync is False


def test_ferroflow_profile_selects_another_profile(isolated_home, monkeypatch):
    write_toml(
        isolated_home / "profiles.toml",
        'active = "default"\n'
        '[profiles.default]\nFERROFLOW_RESULTS_DEFAULT_SERIALIZER = "json"\n'
        '[profiles.ci]\nFERROFLOW_RESULTS_DEFAULT_SERIALIZER = "compressed/pickle"\n',
    )
    assert get_current_settings().results_default_serializer == "json"
    monkeypatch.setenv("FERROFLOW_PROFILE", "ci")
    assert get_current_settings().results_default_serializer == "compressed/pickle"


def test_write_profile_keeps_the_other_profiles(isolated_home, monkeypatch):
    write_toml(isolated_home / "profiles.toml", '[profiles.ci]\nFERROFLOW_RESULTS_FSYNC = "true"\n')
    write_profile({"FERROFLOW_RESULTS_PERSIST_BY_DEFAULT": "true"})
    assert read_profile() == {"FERROFLOW_RESULTS_PERSIST_BY_DEFAULT": "true"}
    monkeypatch.setenv("FERROFLOW_PROFILE", "ci")
    assert read_profile() == {"FERROFLOW_RESULTS_FSYNC": "true"}
    assert profiles_path() == isolated_home / "profiles.toml"


def test_writing_a_profile_chosen_by_the_environment_keeps_the_default_active(isolated_home, monkeypatch):
    monkeypatch.setenv("FERROFLOW_PROFILE", "ci")
    write_profile({"FERROFLOW_RESULTS_FSYNC": "true"})
    assert get_current_settings().results_fsync is True
    monkeypatch.delenv("FERROFLOW_PROFILE")
    assert get_current_settings().results_fsync is False


def test_validate_setting_parses_and_refuses():
    assert validate_setting("ferroflow_results_fsync", "on") == ("FERROFLOW_RESULTS_FSYNC", True)
    with pytest.raises(InvalidSettingError, match="cannot be set in the profile"):
        validate_setting("FERROFLOW_HOME", "/tmp")
    with pytest.raises(InvalidSettingError, match="Expected true or false"):
        validate_setting("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "perhaps")


# ---------------------------------------------------------------------------------------------
# runstore_url


@flow(name="where-am-i-recorded")
def tiny_flow() -> int:
    return 1


def recorded_flow_names(url: str) -> list[str]:
    with open_store(url) as store:
        return [run.flow_name for run in store.list_flow_runs()]


def set_in_environment(monkeypatch, url: str):
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", url)
    return contextlib.nullcontext()


def set_in_profile(monkeypatch, url: str):
    result = CliRunner().invoke(app, ["config", "set", f"runstore_url={url}"])
    assert result.exit_code == 0, result.output
    return contextlib.nullcontext()


def set_temporarily(monkeypatch, url: str):
    return temporary_settings(runstore_url=url)


@pytest.mark.parametrize("configure", [set_in_environment, set_in_profile, set_temporarily])
def test_flow_runs_are_recorded_in_the_store_the_setting_names(
    configure, monkeypatch, isolated_home, tmp_path
):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with configure(monkeypatch, url):
        assert default_store_url() == url
        tiny_flow()
    assert recorded_flow_names(url) == ["where-am-i-recorded"]
    assert not (isolated_home / "ferroflow.db").exists()


def test_the_default_store_follows_the_home_folder(isolated_home, tmp_path):
    assert get_current_settings().runstore_url is None
    assert default_store_url() == f"sqlite:///{isolated_home / 'ferroflow.db'}"
    with temporary_settings(home=tmp_path):
        assert default_store_url() == f"sqlite:///{tmp_path / 'ferroflow.db'}"
        tiny_flow()
    assert recorded_flow_names(f"sqlite:///{tmp_path / 'ferroflow.db'}") == ["where-am-i-recorded"]


@pytest.mark.parametrize("url", ["sqlite:///relative.db", "sqlite:////abs/runs.db", "memory://"])
def test_accepted_store_urls(url, monkeypatch):
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"  {url} ")
    assert get_current_settings().runstore_url == url
    assert validate_setting("runstore_url", url) == ("FERROFLOW_RUNSTORE_URL", url)


def test_a_blank_store_url_means_unset(isolated_home, monkeypatch):
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", " ")
    assert get_current_settings().runstore_url is None
    assert default_store_url() == f"sqlite:///{isolated_home / 'ferroflow.db'}"


BAD_STORE_URLS = [
    "mysql://db/ferroflow",
    "postgresql:///",
    "sqlite:///",
    "sqlite://runs.db",
    "runs.db",
    "memory://x",
]


@pytest.mark.parametrize("url", BAD_STORE_URLS)
def test_a_bad_store_url_in_the_environment_names_the_setting_the_value_and_the_accepted_forms(
    url, monkeypatch
):
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", url)
    with pytest.raises(InvalidSettingError) as error:
        default_store_url()
    message = str(error.value)
    assert f"FERROFLOW_RUNSTORE_URL={url!r} (from the environment)" in message
    assert f"Unsupported run store URL {url!r}: use {RUNSTORE_URL_FORMS}" in message


def test_a_bad_store_url_is_refused_by_config_set_temporary_settings_and_open_store():
    with pytest.raises(
        InvalidSettingError, match="Invalid value for FERROFLOW_RUNSTORE_URL: Unsupported run"
    ):
        validate_setting("runstore_url", "mysql://db")
    with pytest.raises(InvalidSettingError, match="FERROFLOW_RUNSTORE_URL='mysql://db'.*sqlite:////absolute"):
        with temporary_settings(runstore_url="mysql://db"):
            pass
    with pytest.raises(ValueError) as from_open_store:
        open_store("mysql://db")
    assert str(from_open_store.value) == f"Unsupported run store URL 'mysql://db': use {RUNSTORE_URL_FORMS}"


# --- blank or unknown names are errors, not silent fallbacks ---------------------------------------


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_home_is_an_error_saying_what_is_expected(monkeypatch, blank):
    monkeypatch.setenv("FERROFLOW_HOME", blank)
    with pytest.raises(
        InvalidSettingError, match="FERROFLOW_HOME is set but blank. Expected the path of ferroflow's folder"
    ):
        get_current_settings()
    with pytest.raises(InvalidSettingError, match="FERROFLOW_HOME is set but blank"):
        profiles_path()


def test_a_blank_home_given_in_code_is_refused_too():
    with pytest.raises(InvalidSettingError, match="FERROFLOW_HOME is set but blank"):
        with temporary_settings(home=""):
            pass


def test_a_profile_that_does_not_exist_is_an_error_listing_the_profiles(isolated_home, monkeypatch):
    write_toml(isolated_home / "profiles.toml", "[profiles.default]\n[profiles.ci]\n[profiles.prod]\n")
    monkeypatch.setenv("FERROFLOW_PROFILE", "prdo")
    with pytest.raises(InvalidSettingError) as error:
        get_current_settings()
    message = str(error.value)
    assert "FERROFLOW_PROFILE='prdo' names no profile" in message
    assert f"a profile in {isolated_home / 'profiles.toml'} (its profiles are ci, default, prod)" in message
    assert "unset FERROFLOW_PROFILE" in message


def test_a_profile_is_required_even_without_a_profile_file(monkeypatch):
    monkeypatch.setenv("FERROFLOW_PROFILE", "ci")
    with pytest.raises(InvalidSettingError, match=r"names no profile.*it has no profiles yet"):
        get_current_settings()


def test_a_blank_profile_name_is_an_error(monkeypatch):
    monkeypatch.setenv("FERROFLOW_PROFILE", "")
    with pytest.raises(InvalidSettingError, match="FERROFLOW_PROFILE is set but blank"):
        get_current_settings()


def test_the_default_profile_may_be_chosen_before_it_exists(monkeypatch, isolated_home):
    monkeypatch.setenv("FERROFLOW_PROFILE", "default")
    assert get_current_settings().home == isolated_home


def test_config_set_creates_the_profile_the_environment_names(isolated_home):
    env = {"FERROFLOW_PROFILE": "ci"}
    done = CliRunner().invoke(app, ["config", "set", "FERROFLOW_RESULTS_FSYNC=true"], env=env)
    assert done.exit_code == 0, done.output
    viewed = CliRunner().invoke(app, ["config", "view"], env=env)
    assert viewed.exit_code == 0 and "FERROFLOW_RESULTS_FSYNC='true' (from profile)" in viewed.output


def test_the_cli_reports_an_unknown_profile_without_a_traceback():
    done = CliRunner().invoke(app, ["config", "view"], env={"FERROFLOW_PROFILE": "nope"})
    assert done.exit_code != 0
    assert "FERROFLOW_PROFILE='nope' names no profile" in done.output
    assert "Traceback" not in done.output


def test_a_flow_run_keeps_the_profile_it_started_with_and_the_next_run_sees_a_change(isolated_home):
    write_profile({"FERROFLOW_RESULTS_DEFAULT_SERIALIZER": "json"})
    seen = []

    def another_process_changes_the_profile():
        write_toml(
            isolated_home / "profiles.toml",
            '[profiles.default]\nFERROFLOW_RESULTS_DEFAULT_SERIALIZER = "compressed/pickle"\n',
        )

    @flow
    def observe(change):
        seen.append(get_current_settings().results_default_serializer)
        if change is not None:
            change()
        seen.append(get_current_settings().results_default_serializer)

    observe(another_process_changes_the_profile)
    assert seen == ["json", "json"]
    assert get_current_settings().results_default_serializer == "compressed/pickle"  # outside a run: at once
    observe(None)
    assert seen[2:] == ["compressed/pickle", "compressed/pickle"]


def test_inside_a_flow_run_the_environment_and_this_process_profile_writes_apply_at_once(
    isolated_home, monkeypatch
):
    @flow
    def observe():
        before = get_current_settings().results_fsync
        monkeypatch.setenv("FERROFLOW_RESULTS_FSYNC", "true")
        from_environment = get_current_settings().results_fsync
        monkeypatch.delenv("FERROFLOW_RESULTS_FSYNC")
        write_profile({"FERROFLOW_RESULTS_FSYNC": "true"})
        return before, from_environment, get_current_settings().results_fsync

    assert observe() == (False, True, True)
