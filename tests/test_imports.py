"""The project's import graph, read from the source (every import statement, those inside functions too): no module
of yolo_incep or experiments imports one that imports it back, directly or through others; scripts import the
package as installed, never by editing sys.path, and tests import no script by its file path."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("yolo_incep", "experiments")


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            init = parts[-1] == "__init__"
            found[".".join(parts[:-1] if init else parts)] = (path, init)
    return found


def imports(name: str, path: Path, init: bool, known: dict) -> set[str]:
    """The project modules `name` imports (a package when the name is none of its modules)."""
    base = name if init else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                module = f"{anchor}.{module}".rstrip(".")
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (its first module repeated at its end), None if there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return e.args[1]
    return None


def test_no_module_imports_one_that_imports_it_back():
    known = modules()
    graph = {name: imports(name, path, init, known) for name, (path, init) in known.items()}
    assert graph["yolo_incep.bench.sitting"] >= {"yolo_incep.bench.supervisor", "yolo_incep.bench.steps"}
    assert circle(graph) is None


def test_the_check_finds_a_circle():
    found = circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert set(found) == {"a", "b", "c"} and found[0] == found[-1]


def test_scripts_import_the_installed_package_and_tests_import_no_script():
    edits = [p.name for p in (ROOT / "scripts").glob("*.py") if "sys.path" in p.read_text(encoding="utf-8")]
    assert edits == []
    by_path = [p.name for p in (ROOT / "tests").glob("*.py")
               if p.name != Path(__file__).name and "spec_from_file_location" in p.read_text(encoding="utf-8")]
    assert by_path == []  # what a test needs from a script belongs in the package
