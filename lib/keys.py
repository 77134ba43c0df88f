"""What identifies a computation: the settings it runs with, and the code that runs it.

A unit's record and a training's checkpoint are named by :func:`settings_digest` over both. The
code's part, :func:`code_digest`, covers what can change a result and nothing else:

* only the ``lib`` modules a computation really uses: its module and, transitively, the modules
  that define the names it imports (``from .models import PyramidNet`` follows the package's
  re-export to ``models/pyramid.py``, not to every model the package re-exports);
* each module as its syntax tree without docstrings, so that a comment, a docstring or a change of
  layout leaves every record valid, while a changed constant, name or statement does not.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from pathlib import Path

LIB_DIR = Path(__file__).resolve().parent


def plain(value):
    """``value`` as JSON-ready plain data: dataclasses as dicts, tuples as lists, paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} cannot be part of a settings digest; use a frozen dataclass of plain values")


def settings_digest(*settings, code: str) -> str:
    """One digest for the settings a computation runs with and the code it runs: the key of its
    checkpoint and of its result record. Every field counts: change one, and it is another run."""
    text = json.dumps({"settings": [plain(s) for s in settings], "code": code}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_digest(path: Path) -> str:
    """A module's code as its syntax tree without docstrings: comments, docstrings and layout do not count."""
    tree = _without_docstrings(ast.parse(path.read_text()))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False, include_attributes=False).encode()).hexdigest()


def _module_file(parts: list[str], lib_dir: Path) -> Path | None:
    """The file of the ``lib`` module named by ``parts`` (e.g. ["lib", "models", "pyramid"]), if there is one."""
    target = lib_dir.parent.joinpath(*parts)
    for file in (target.with_suffix(".py"), target / "__init__.py"):
        if file.is_file():
            return file
    return None


def _defining_module(init: Path, name: str, lib_dir: Path) -> Path | None:
    """Where a package's ``__init__`` gets ``name`` from, when it re-exports it from one of its modules."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return _module_file(_absolute(node, init, lib_dir), lib_dir)
    return None


def _absolute(node: ast.ImportFrom, path: Path, lib_dir: Path) -> list[str]:
    """The absolute module path of an ``from ... import`` in the module at ``path``, as parts."""
    if not node.level:
        return (node.module or "").split(".")
    package = list(path.parent.relative_to(lib_dir.parent).parts)  # lib/a/b.py and lib/a/__init__.py both sit in lib.a
    base = package[: len(package) - node.level + 1]
    return base + ((node.module or "").split(".") if node.module else [])


def lib_imports(path: Path, lib_dir: Path = LIB_DIR) -> set[Path]:
    """The files of ``lib`` whose code the module at ``path`` uses directly: each module it imports,
    and for ``from package import name``, the module that defines ``name`` (a submodule, or the
    module the package's ``__init__`` re-exports it from)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == lib_dir.name and (file := _module_file(parts, lib_dir)):
                    found.add(file)
        elif isinstance(node, ast.ImportFrom):
            parts = _absolute(node, path, lib_dir)
            if not parts or parts[0] != lib_dir.name:
                continue
            module = _module_file(parts, lib_dir)
            for alias in node.names:
                sub = _module_file(parts + [alias.name], lib_dir)
                if sub is not None:  # from package import submodule
                    found.add(sub)
                elif module is not None and module.name == "__init__.py":  # a name the package re-exports, or defines itself
                    found.add(_defining_module(module, alias.name, lib_dir) or module)
                elif module is not None:
                    found.add(module)
    return found


def code_digest(module: str | None = None, lib_dir: Path = LIB_DIR) -> str:
    """SHA-256 over the library code a computation runs: ``module`` (e.g. ``"soc_experiment"``) and the
    ``lib`` modules it uses, transitively (:func:`lib_imports`), each by :func:`source_digest`; the
    whole library when ``module`` is None. A change to the scorecard or the runner does not touch a
    chapter's experiment; a change to the training loop does; a comment changes nothing."""
    if module is None:
        files = set(lib_dir.rglob("*.py"))
    else:
        start = _module_file([lib_dir.name, *module.split(".")], lib_dir)
        if start is None:
            raise ValueError(f"no module {module!r} under {lib_dir}")
        files, todo = set(), [start]
        while todo:
            file = todo.pop()
            if file not in files:
                files.add(file)
                todo.extend(lib_imports(file, lib_dir))
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.relative_to(lib_dir).as_posix().encode())
        h.update(source_digest(path).encode())
    return h.hexdigest()[:16]
