import tomllib

import pytest
from click.testing import CliRunner

from ferroflow.cli import app
from ferroflow.settings import get_current_settings


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["config", *args], env=env, prog_name="ferroflow")


def profile_values(home) -> dict[str, str]:
    with (home / "profiles.toml").open("rb") as file:
        return tomllib.load(file)["profiles"]["default"]


def test_set_stores_validated_values_in_the_active_profile(isolated_home):
    result = run("set", "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT=true", "results_default_serializer=json")
    assert result.exit_code == 0, result.output
    assert "Set FERROFLOW_RESULTS_PERSIST_BY_DEFAULT='true'" in result.output
    assert profile_values(isolated_home) == {
        "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT": "true",
        "FERROFLOW_RESULTS_DEFAULT_SERIALIZER": "json",
    }
    settings = get_current_settings()
    assert settings.results_persist_by_default is True
    assert settings.results_default_serializer == "json"


def test_set_refuses_an_unknown_key_listing_the_known_ones(isolated_home):
    result = run("set", "FERROFLOW_RESULT_PERSIST=true")
    assert result.exit_code == 1
    assert "Unknown setting 'FERROFLOW_RESULT_PERSIST'" in result.output
    assert "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT" in result.output
    assert not (isolated_home / "profiles.toml").exists()


def test_set_refuses_an_invalid_value_and_writes_nothing(isolated_home):
    result = run("set", "FERROFLOW_RESULTS_FSYNC=sometimes")
    assert result.exit_code == 1
    assert "Invalid value 'sometimes' for FERROFLOW_RESULTS_FSYNC" in result.output
    assert "Expected true or false" in result.output
    assert not (isolated_home / "profiles.toml").exists()


def test_set_refuses_an_argument_without_equals_sign():
    result = run("set", "FERROFLOW_RESULTS_FSYNC")
    assert result.exit_code == 2
    assert "Expected KEY=VALUE" in result.output


def test_set_warns_when_the_environment_overrides_the_profile(monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_FSYNC", "false")
    result = run("set", "FERROFLOW_RESULTS_FSYNC=true")
    assert result.exit_code == 0
    assert "also set in the environment" in result.output


def test_set_warns_about_a_serializer_type_that_is_not_built_in():
    result = run("set", "FERROFLOW_RESULTS_DEFAULT_SERIALIZER=yaml")
    assert result.exit_code == 0
    assert "'yaml' is not a built-in serializer type" in result.output


def test_unset_removes_a_value_and_refuses_one_not_set(isolated_home):
    run("set", "FERROFLOW_RESULTS_FSYNC=true", "FERROFLOW_TASKS_REFRESH_CACHE=true")
    result = run("unset", "ferroflow_results_fsync")
    assert result.exit_code == 0, result.output
    assert profile_values(isolated_home) == {"FERROFLOW_TASKS_REFRESH_CACHE": "true"}
    assert get_current_settings().results_fsync is False

    again = run("unset", "FERROFLOW_RESULTS_FSYNC")
    assert again.exit_code == 1
    assert "FERROFLOW_RESULTS_FSYNC is not set in profile 'default'" in again.output

    unknown = run("unset", "FERROFLOW_NOPE")
    assert unknown.exit_code == 1
    assert "Unknown setting 'FERROFLOW_NOPE'" in unknown.output


def test_view_shows_each_value_and_its_source(isolated_home):
    run("set", "FERROFLOW_RESULTS_DEFAULT_SERIALIZER=json")
    result = run("view", env={"FERROFLOW_RESULTS_FSYNC": "1"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "FERROFLOW_RESULTS_DEFAULT_SERIALIZER='json' (from profile)" in lines
    assert "FERROFLOW_RESULTS_FSYNC='true' (from env)" in lines
    assert f"FERROFLOW_HOME='{isolated_home}' (from env)" in lines
    assert not any("(from default)" in line for line in lines)


def test_view_show_defaults_and_hide_sources(isolated_home):
    with_defaults = run("view", "--show-defaults")
    assert "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT='false' (from default)" in with_defaults.output
    storage_line = f"FERROFLOW_LOCAL_STORAGE_PATH='{isolated_home / 'storage'}' (from default)"
    assert storage_line in with_defaults.output

    bare = run("view", "--show-defaults", "--hide-sources")
    assert "FERROFLOW_TASKS_REFRESH_CACHE='false'" in bare.output.splitlines()


def test_view_shows_the_run_store_url_and_where_it_comes_from(isolated_home, tmp_path):
    default_line = f"FERROFLOW_RUNSTORE_URL='sqlite:///{isolated_home / 'ferroflow.db'}' (from default)"
    assert default_line in run("view", "--show-defaults").output.splitlines()

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert run("set", f"FERROFLOW_RUNSTORE_URL={url}").exit_code == 0
    assert f"FERROFLOW_RUNSTORE_URL='{url}' (from profile)" in run("view").output.splitlines()
    from_env = run("view", env={"FERROFLOW_RUNSTORE_URL": "memory://"})
    assert "FERROFLOW_RUNSTORE_URL='memory://' (from env)" in from_env.output.splitlines()


def test_set_refuses_a_bad_run_store_url_listing_the_accepted_forms(isolated_home):
    result = run("set", "runstore_url=mysql://db/ferroflow")
    assert result.exit_code == 1
    assert "Invalid value for FERROFLOW_RUNSTORE_URL: Unsupported run store URL 'mysql://db/ferroflow'" in (
        result.output
    )
    assert (
        "sqlite:///relative/path.db, sqlite:////absolute/path.db" in result.output
        and "memory://" in result.output
    )
    assert not (isolated_home / "profiles.toml").exists()


def test_view_reports_an_invalid_environment_value_as_an_error():
    result = run("view", env={"FERROFLOW_RESULTS_FSYNC": "maybe"})
    assert result.exit_code == 1
    assert "FERROFLOW_RESULTS_FSYNC='maybe' (from the environment)" in result.output


@pytest.mark.parametrize("command", [[], ["set"], ["unset"], ["view"]])
def test_every_config_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output
    assert "ferroflow config" in result.output


@pytest.mark.parametrize(
    "command", [["set", "FERROFLOW_RESULTS_FSYNC=true"], ["unset", "FERROFLOW_RESULTS_FSYNC"], ["view"]]
)
def test_a_broken_profile_file_is_reported_not_a_traceback(isolated_home, command):
    (isolated_home / "profiles.toml").write_text("[profiles.default\n")
    result = run(*command)
    assert result.exit_code == 1
    assert "is not valid TOML" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_value_that_is_not_text_is_refused_not_traced(isolated_home):
    result = CliRunner().invoke(app, ["config", "set", "runstore_url=sqlite:///\udcff"])
    assert result.exit_code == 2 and "not UTF-8 text" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_run_store_password_is_never_shown(isolated_home, monkeypatch):
    url = "postgresql://ferroflow:s3cret-pw@db.internal:5432/runs"
    result = run("set", f"runstore_url={url}")
    assert result.exit_code == 0, result.output
    assert "postgresql://ferroflow:***@db.internal:5432/runs" in result.output
    viewed = run("view")
    assert "FERROFLOW_RUNSTORE_URL='postgresql://ferroflow:***@db.internal:5432/runs' (from profile)" in (
        viewed.output.splitlines()
    )
    refused = run("view", env={"FERROFLOW_RUNSTORE_URL": "mysql://ferroflow:s3cret-pw@db/runs"})
    assert refused.exit_code == 1 and "mysql://ferroflow:***@db/runs" in refused.output
    for output in (result.output, viewed.output, refused.output):
        assert "s3cret-pw" not in output


def test_a_signing_key_is_stored_but_never_echoed(isolated_home):
    secret = "a signing secret nobody may read"
    result = run("set", f"FERROFLOW_RESULTS_SIGNING_KEY={secret}")
    assert result.exit_code == 0, result.output
    assert secret not in result.output and "FERROFLOW_RESULTS_SIGNING_KEY='**********'" in result.output
    assert profile_values(isolated_home) == {"FERROFLOW_RESULTS_SIGNING_KEY": secret}
    shown = run("view")
    assert secret not in shown.output and "'**********'" in shown.output
    assert get_current_settings().results_signing_key.get_secret_value() == secret
