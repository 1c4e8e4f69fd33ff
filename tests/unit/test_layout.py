"""The package's layers, checked on the source: each role package imports only from the
layers below it, and no two modules import each other, directly or in a circle.

    errors, settings  <  core  <  wire, security  <  tensor  <  plan, federated  <  client
                              worker: core, wire, security, plan.runner only
                              deploy (the syftzmq command): client, worker; testing: client

Every import counts, at module level or inside a function (a function-level import that only
dodges a circle is still a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "syftzmq"

# What each part may import from syftzmq (besides itself).
ALLOWED = {
    "errors": set(),
    "settings": set(),
    "core": {"errors", "settings"},
    "wire": {"errors", "settings", "core"},
    "security": {"errors", "settings", "core", "wire"},
    "tensor": {"errors", "settings", "core", "wire", "security"},
    "plan": {"errors", "settings", "core", "wire", "security", "tensor"},
    "federated": {"errors", "settings", "core", "tensor"},
    "client": {"errors", "settings", "core", "wire", "security", "tensor", "plan", "federated"},
    "worker": {"errors", "settings", "core", "wire", "security", "plan.runner"},
    "deploy": {"errors", "settings", "core", "wire", "security", "client", "worker"},
    "testing": {"errors", "settings", "core", "client", "tensor"},
    "plan.runner": {"errors", "settings", "core"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The syftzmq modules ``path`` imports (``syftzmq.x.y``), wherever the import stands."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                         else source for alias in node.names)
    return {name for name in found if name in modules and name != module}


def _part(module: str) -> str:
    """``syftzmq.plan.runner`` -> ``plan.runner`` where that is a part of its own, else the
    package (``plan``), or the top-level module (``errors``)."""
    rest = module.split(".")[1:]
    if rest[:2] == ["plan", "runner"]:
        return "plan.runner"
    return rest[0] if rest else ""


def _may_import(part: str, target: str) -> bool:
    if target == part or target == "":
        return True
    if part != "plan.runner" and target.split(".")[0] == part.split(".")[0]:
        return True  # within one package (but the worker's half of plans stays apart)
    return target in ALLOWED[part]


def test_every_package_imports_only_from_the_layers_below_it():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        part = _part(module)
        if part not in ALLOWED:  # the package's own __init__ and __main__ gather everything
            continue
        wrong += [f"{module} imports {target}" for target in _imports(path)
                  if not _may_import(part, _part(target))]
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    # a package's __init__ importing its own submodules is not a circle through them
    circles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checks_catch_a_wrong_import(tmp_path, monkeypatch):
    """The direction check is not vacuous: a worker module importing the tensor proxy fails."""
    fake = tmp_path / "syftzmq"
    for path in PACKAGE.rglob("*.py"):
        target = fake / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (fake / "worker" / "sneaky.py").write_text("from ..tensor.pointer import PointerTensor\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    try:
        test_every_package_imports_only_from_the_layers_below_it()
    except AssertionError as exc:
        assert "syftzmq.worker.sneaky imports syftzmq.tensor.pointer" in str(exc)
    else:
        raise AssertionError("the layering check accepted a worker importing the proxy")


def test_every_package_directory_is_a_regular_package():
    """``setup.cfg`` installs ``find:`` packages: a folder without ``__init__.py`` would be left
    out of an installed syftzmq (it works from a checkout, as a namespace package)."""
    folders = {path.parent for path in PACKAGE.rglob("*.py")}
    missing = sorted(str(f.relative_to(PACKAGE.parent)) for f in folders
                     if not (f / "__init__.py").exists() and f.name != "__pycache__")
    assert not missing, f"package folders without __init__.py: {missing}"


def test_a_worker_process_loads_no_client_or_proxy_code():
    """At run time too: ``python -m syftzmq.worker`` imports the worker's modules and what they
    stand on, not the client, the tensor proxy, plans' client half or the deploy tools (the
    package's top-level names are imported lazily)."""
    import subprocess
    import sys
    probe = ("import sys, syftzmq.worker.cli; "
             "print(' '.join(m for m in sys.modules if m.startswith('syftzmq')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True, cwd=PACKAGE.parent).stdout.split()
    assert "syftzmq.worker.server" in loaded
    wrong = [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in
             ("client", "tensor", "federated", "deploy", "testing") or m == "syftzmq.plan.plan"]
    assert not wrong, f"a worker process imported {wrong}"


def test_test_files_have_unique_names():
    """The test folders are not packages, so pytest imports each test file by its basename:
    two files of one name in different folders stop the whole collection."""
    tests = Path(__file__).resolve().parents[1]
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
