import re
from pathlib import Path

import ferroflow


def test_version_is_the_crate_version():
    assert ferroflow.__version__.count(".") == 2


def test_make_wheel_builds_what_the_release_workflow_publishes():
    repository = Path(__file__).resolve().parents[1]
    makefile = (repository / "Makefile").read_text()
    workflow = (repository / ".github" / "workflows" / "wheels.yml").read_text()
    [make_args] = re.findall(r"^WHEEL_ARGS := (.+)$", makefile, re.MULTILINE)
    linux_job = workflow.split("  linux:", 1)[1].split("\n  macos:", 1)[0]
    [workflow_args] = re.findall(r"^\s+args: (.+)$", linux_job, re.MULTILINE)
    assert make_args.split() == workflow_args.split()
    assert "--compatibility manylinux2014" in make_args and "--zig" in make_args
    [make_targets] = re.findall(r"^WHEEL_TARGETS := (.+)$", makefile, re.MULTILINE)
    [workflow_targets] = re.findall(r"matrix:\n\s+target: \[(.+)\]", linux_job)
    assert [
        f"{arch.strip()}-unknown-linux-gnu" for arch in workflow_targets.split(",")
    ] == make_targets.split()
    assert make_targets.split() == ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]


def test_the_readme_links_work_on_pypi():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links and all(link.startswith("https://") for link in links), [
        link for link in links if not link.startswith("https://")
    ]
