from click.testing import CliRunner

import ferroflow
from ferroflow.cli import app


def test_version_option_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert ferroflow.__version__ in result.output


def test_help_lists_usage():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_invalid_settings_are_reported_without_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FERROFLOW_HOME": str(tmp_path), "FERROFLOW_PROFILE": "nope"}
    done = subprocess.run(
        [sys.executable, "-m", "ferroflow", "results", "prune", "--older-than", "1d", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: FERROFLOW_PROFILE='nope' names no profile")
    assert "Traceback" not in done.stderr
