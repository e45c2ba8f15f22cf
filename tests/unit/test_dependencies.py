"""pyproject.toml's dependencies are exactly the distributions pkube's packages import."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pkube"    # the one installed name; every component is a package under it


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_levels() -> set[str]:
    """The top-level modules imported anywhere in pkube's packages but its own and the stdlib."""
    names = set()
    for path in (ROOT / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != PACKAGE
            and not n.startswith("_") and n != "__future__"}


def test_dependencies_are_what_the_code_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[=<>!~\[; ]", dep)[0]) for dep in project["dependencies"]}
    providers = packages_distributions()
    imported = {normalized(dist) for name in imported_top_levels() for dist in providers.get(name, [name])}
    assert imported == declared, (f"imported but not declared: {sorted(imported - declared)}; "
                                  f"declared but not imported: {sorted(declared - imported)}")
