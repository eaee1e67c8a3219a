"""Processes that stand for other machines: each with a ferroflow home of its own, running the
package from this tree."""

import os
import subprocess
import sys
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1] / "python")


def home_env(home: Path) -> dict[str, str]:
    """The environment of a process whose ferroflow home (run store, settings) is `home`."""
    return {**os.environ, "FERROFLOW_HOME": str(home), "PYTHONPATH": PACKAGE_PARENT}


def run_in_home(home: Path, script: Path, *arguments: str) -> str:
    """Run `script` with `arguments` in a process of its own with `home`; its output, stripped."""
    done = subprocess.run(
        [sys.executable, str(script), *arguments],
        env=home_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
