"""The source files a command really runs: a module and every bloodcell module it imports,
transitively, read from the source with ``ast`` (nothing is imported).

A stage's code dependencies are these files: Snakemake's rules take them from
:func:`code_deps` (workflow/rules/common.smk loads this file by path), dvc.yaml lists the same
paths (a test derives them again and compares), and training's resume key hashes them. Imports
inside functions count (commands import their heavy modules lazily); package ``__init__.py``
files, which hold no stage logic, do not, and their own imports are not followed (bloodcell's
``__init__`` imports the Detector API only when it is asked for). Pure standard library, so
the Snakefile can use it before any of bloodcell's dependencies are importable.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The bloodcell package folder (the parent of common/) that this file belongs to."""


def module_path(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of a dotted bloodcell module (``bloodcell.dataset.synth``) under
    ``package_dir``, a package's ``__init__.py``, or None if no such module exists."""
    parts = name.split(".")
    if parts[0] != "bloodcell":
        return None
    rel = Path(*parts[1:]) if len(parts) > 1 else None
    if rel is None:
        return package_dir / "__init__.py"
    for candidate in (package_dir / rel.with_suffix(".py"), package_dir / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(nodes, package_dir: Path) -> frozenset[str]:
    """The bloodcell modules the import statements among ``nodes`` (and their children) name.
    ``from bloodcell.x import y`` counts ``bloodcell.x.y`` when y is a module."""
    found: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "bloodcell")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "bloodcell":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if module_path(f"{node.module}.{a.name}", package_dir) is not None)
    return frozenset(m for m in found if module_path(m, package_dir) is not None)


@cache
def _tree(name: str, package_dir: Path) -> ast.Module | None:
    path = module_path(name, package_dir)
    return None if path is None else ast.parse(path.read_text(encoding="utf-8"))


@cache
def direct_imports(name: str, package_dir: Path = PACKAGE_DIR) -> frozenset[str]:
    """The bloodcell modules ``name`` imports anywhere in its source (top level or inside a
    function). ``NAME:FUNCTION`` takes the module's top-level statements other than function
    and class definitions, plus that one function: what calling it runs."""
    module, _, function = name.partition(":")
    tree = _tree(module, package_dir)
    if tree is None:
        return frozenset()
    if not function:
        return _imported([tree], package_dir)
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    nodes = [n for n in tree.body if not isinstance(n, defs)]
    nodes += [n for n in tree.body if isinstance(n, defs) and n.name == function]
    if len(nodes) == sum(not isinstance(n, defs) for n in tree.body):
        raise KeyError(f"{module} has no top-level function {function}")
    return _imported(nodes, package_dir)


def closure(name: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """``name`` (a module, or MODULE:FUNCTION) and every bloodcell module it imports,
    transitively (dotted module names)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            path = module_path(module.partition(":")[0], package_dir)
            if path is not None and path.name != "__init__.py":  # a package's own imports
                todo.extend(direct_imports(module, package_dir) - seen)  # are not followed
    return seen


def code_files(name: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The source files of :func:`closure` without package ``__init__.py`` files, sorted."""
    paths = (module_path(m.partition(":")[0], package_dir) for m in closure(name, package_dir))
    return sorted(p for p in paths if p is not None and p.name != "__init__.py")


def code_deps(*names: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The code dependencies of a stage whose command runs ``names`` (modules, or
    MODULE:FUNCTION for a module that holds several commands): paths
    relative to the project root (``bloodcell/dataset/synth.py``), sorted, as Snakemake inputs
    and dvc.yaml deps."""
    files = {p for name in names for p in code_files(name, package_dir)}
    return sorted(p.relative_to(package_dir.parent).as_posix() for p in files)


if __name__ == "__main__":  # python -m bloodcell.common.code_deps MODULE[:FUNCTION]...
    import sys

    print("\n".join(code_deps(*sys.argv[1:])))
