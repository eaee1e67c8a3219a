"""The wheel `make wheel` builds (what the release workflow publishes), installed into a fresh
virtual environment with no Rust toolchain on PATH, runs the README's quick start from a folder
outside the repository.

Building the release wheel takes minutes, so this runs under `make test-wheel` (which `make test`
calls), which builds it and names it in FERROFLOW_TEST_WHEEL."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
WHEEL = os.environ.get("FERROFLOW_TEST_WHEEL", "")

pytestmark = pytest.mark.skipif(
    not WHEEL, reason="run by `make test-wheel`, which builds the release wheel and sets FERROFLOW_TEST_WHEEL"
)


def quick_start() -> str:
    """The first Python block after the README's `## Quick start` heading."""
    readme = (REPOSITORY / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def path_without_rust() -> str:
    """PATH without any folder holding cargo or rustc."""
    folders = [
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not any(os.path.exists(os.path.join(folder, tool)) for tool in ("cargo", "rustc"))
    ]
    return os.pathsep.join(folders)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel (and its dependencies, as wheels only) installed."""
    root = tmp_path_factory.mktemp("wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        "PATH": os.pathsep.join([str(venv / "bin"), path_without_rust()]),
        "HOME": os.environ.get("HOME", str(root)),
        # A source build would otherwise download a Rust toolchain: fail instead.
        "MATURIN_NO_INSTALL_RUST": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    assert shutil.which("cargo", path=env["PATH"]) is None and shutil.which("rustc", path=env["PATH"]) is None
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--only-binary", ":all:", WHEEL],
        check=True,
        env=env,
    )
    outside = root / "elsewhere"
    outside.mkdir()
    return {"venv": venv, "env": {**env, "FERROFLOW_HOME": str(root / "home")}, "cwd": outside}


def run(installed, *arguments):
    return subprocess.run(
        arguments, cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True, check=True
    )


def test_the_wheel_is_manylinux2014_abi3():
    name = Path(WHEEL).name
    assert re.fullmatch(r"ferroflow-[\d.]+-cp311-abi3-[\w.]+\.whl", name), name
    platforms = set(name.removesuffix(".whl").split("-")[-1].split("."))
    assert platforms == {"manylinux2014_x86_64", "manylinux_2_17_x86_64"}, name
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", WHEEL], capture_output=True, text=True, check=True
    )
    verdict = " ".join(shown.stdout.split())  # auditwheel wraps its lines
    assert 'consistent with the following platform tag: "manylinux_2_17_x86_64"' in verdict, shown.stdout
    with zipfile.ZipFile(WHEEL) as wheel:
        files = wheel.namelist()
    assert "ferroflow/_core.abi3.so" in files and "ferroflow/py.typed" in files
    assert not any(name.startswith(("tests/", "rust/")) for name in files)


def test_the_installed_package_is_the_wheel_not_the_source_tree(installed):
    shown = run(installed, "python", "-c", "import ferroflow, ferroflow._core; print(ferroflow.__file__)")
    location = Path(shown.stdout.strip())
    assert installed["venv"] in location.parents and REPOSITORY not in location.parents


def test_the_readme_quick_start_runs_from_outside_the_repository(installed):
    script = installed["cwd"] / "quick_start.py"
    script.write_text(quick_start())
    shown = run(installed, "python", str(script))
    assert shown.stdout.split() == ["100.5", "100.5"], shown.stdout + shown.stderr
    listed = run(installed, "ferroflow", "runs", "ls", "--json")
    assert [run_["flow_name"] for run_ in json.loads(listed.stdout)] == ["report", "report"]
