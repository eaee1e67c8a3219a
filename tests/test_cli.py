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
