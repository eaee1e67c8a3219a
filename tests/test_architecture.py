"""The house rules that the import contracts (`make lint`) cannot see by themselves."""

import ast
from pathlib import Path

import ferroflow

PACKAGE = Path(ferroflow.__file__).parent


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def imports_from_the_root_package(path):
    """(line, name) of every `from ferroflow import name` / `import ferroflow` in `path` (a bare
    `import ferroflow` reaches the whole face of the package through attributes)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, "the package itself") for alias in node.names if alias.name == "ferroflow"
            ]
        if isinstance(node, ast.ImportFrom) and node.module == "ferroflow" and node.level == 0:
            found += [(node.lineno, alias.name) for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 1 and path.parent == PACKAGE:
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def is_submodule(name):
    """Taking a submodule from the root (`from ferroflow import _core`) imports that module only."""
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists() or name == "_core"


def test_the_package_imports_only_modules_from_its_root():
    # The contracts leave imports of the root package out (the compiled core has no source, so
    # `import ferroflow._core as _core` reads as one); a name other than a submodule taken from
    # the root would pull the whole face of the package into the importing layer.
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} imports {name!r} from ferroflow"
        for path in modules()
        if path.name != "__init__.py" or path.parent != PACKAGE
        for line, name in imports_from_the_root_package(path)
        if not is_submodule(name)
    ]
    assert offenders == []


def test_the_cli_imports_neither_the_core_nor_the_engine():
    offenders = []
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            offenders += [
                f"{path.name}:{node.lineno} {name}"
                for name in names
                if name.startswith(("ferroflow._core", "ferroflow._engine"))
            ]
    assert offenders == []


def test_only_flows_and_tasks_name_the_engine_even_in_strings():
    # A module path in a string (a fork server's preload list, importlib) is an import the
    # contracts cannot see; below the face, only the engine itself may name its modules.
    allowed = {PACKAGE / "flows.py", PACKAGE / "tasks.py"}
    offenders = []
    for path in modules():
        if path in allowed or PACKAGE / "_engine" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith("ferroflow._engine"):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert offenders == []
