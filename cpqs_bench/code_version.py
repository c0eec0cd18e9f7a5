"""The code version of a stage: what, besides its data and config, determines its output.

A stage's input hash includes ``code_version(entry modules, extra files)``: the package version, a sha256 over the
source of every ``cpqs_bench`` module the stage's entry modules import (found statically, transitively, from the
AST — including imports inside functions, so lazily imported code counts), the contents of extra files it reads
(task YAMLs, evaluation data) and the versions of the libraries that compute it. A one-line edit to the GSM8K
extractor therefore changes the evaluation stages' hashes and nothing upstream (scoring does not import it), and a
``make reproduce`` after the edit reruns exactly the stages the edit can affect.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
from pathlib import Path
from typing import Iterable

PACKAGE = "cpqs_bench"
PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "lm_eval", "datasets", "numpy")


def module_file(name: str) -> Path | None:
    """The source file of a ``cpqs_bench`` module (package → its ``__init__.py``), or None if there is none."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    rel = name.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*rel)
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


@functools.lru_cache(maxsize=None)
def direct_imports(name: str, parents: bool = True) -> frozenset[str]:
    """``cpqs_bench`` modules that module ``name`` imports anywhere in its source (top level or inside functions);
    with ``parents``, also the packages whose ``__init__`` those imports run."""
    path = module_file(name)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(name, is_package, node)
            # `from pkg import mod` imports pkg and, when mod is a submodule, pkg.mod
            targets = [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
        else:
            continue
        for t in targets:
            if module_file(t) is not None:
                found.add(t)
    # importing a.b.c runs a/__init__ and a/b/__init__ too
    for t in list(found) if parents else ():
        parts = t.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)) if module_file(".".join(parts[:i])))
    found.discard(name)
    return frozenset(found)


def closure(entries: Iterable[str]) -> list[str]:
    """Every ``cpqs_bench`` module reachable from ``entries`` through imports (sorted)."""
    seen: set[str] = set()
    todo = [e for e in entries if module_file(e) is not None]
    missing = [e for e in entries if module_file(e) is None]
    if missing:
        raise ValueError(f"code_version: no source for module(s) {missing}")
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(direct_imports(m) - seen)
    return sorted(seen)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _library_versions() -> dict[str, str | None]:
    from cpqs_bench.provenance import package_versions

    versions = package_versions()
    return {lib: versions.get(lib) for lib in LIBRARIES}


def code_version(entries: Iterable[str], files: Iterable[str | Path] = ()) -> dict[str, object]:
    """A JSON-able record of the code that computes a stage; changes whenever any of it changes."""
    mods = closure(list(entries))
    h = hashlib.sha256()
    for m in mods:
        h.update(m.encode() + b"\0" + _file_digest(module_file(m)).encode() + b"\n")  # type: ignore[arg-type]
    extra = hashlib.sha256()
    names = []
    for f in sorted(Path(p) for p in files):
        if f.is_dir():
            members = sorted(x for x in f.rglob("*") if x.is_file())
        else:
            members = [f]
        for x in members:
            extra.update(str(x.name).encode() + b"\0" + _file_digest(x).encode() + b"\n")
            names.append(x.name)
    try:
        version = importlib.metadata.version("cpqs-bench")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "package": version,
        "modules": len(mods),
        "source_sha256": h.hexdigest()[:16],
        "files_sha256": extra.hexdigest()[:16] if names else None,
        "libraries": _library_versions(),
    }
