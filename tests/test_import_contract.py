"""The import contract (docs/architecture.md), read from the source with `ast`, so it holds without
importing anything: tiling never imports pathgen or torch; every module imports only its own layer
or the layers below it (libraries never import stages or commands); no cycles between modules or
between packages; an import inside a function is a named lazy import (start-up time), never a way
around a cycle."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("pathgen", "tiling")

# lowest first; a module may import its own layer and the ones below it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tiling",),
    (
        "pathgen",
        "pathgen.config",
        "pathgen.checkpoint",
        "pathgen.distributed",
        "pathgen.optim",
        "pathgen.schedules",
        "pathgen.threads",
        "pathgen.resources",
    ),
    ("pathgen.data", "pathgen.models"),
    (
        "pathgen.ssl",
        "pathgen.diffusion",
        "pathgen.genaug",
        "pathgen.eval",
        "pathgen.generation_metrics",
        "pathgen.feature_formats",
        "pathgen.train",
    ),
    ("pathgen.stages",),
    ("pathgen.commands", "pathgen.cli", "pathgen.demo"),
)
LIBRARIES = (
    "pathgen.data",
    "pathgen.models",
    "pathgen.ssl",
    "pathgen.diffusion",
    "pathgen.genaug",
    "pathgen.eval",
    "pathgen.generation_metrics",
    "pathgen.feature_formats",
)
LAZY_MARK = "lazy"  # an in-function project import says why it is one: "# lazy: start-up time"


def module_name(path: Path) -> str:
    """pathgen/ssl/dino.py → pathgen.ssl.dino; a package's __init__.py → the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def source_files() -> dict[str, Path]:
    """Every module of the installed packages, by dotted name."""
    files = [p for top in PROJECT for p in sorted((ROOT / top).rglob("*.py"))]
    return {module_name(p): p for p in files}


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level else []
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in `module`; `from a import b`
    counts as importing a.b when a.b is a module, else a."""
    path = source_files()[module]
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, path.name == "__init__.py")
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in source_files() else target, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def project_imports(module: str) -> list[tuple[str, int, bool]]:
    """The imports of `module` that name a module of this project (itself excluded)."""
    return [
        (name, line, lazy)
        for name, line, lazy in imports_of(module)
        if name.split(".")[0] in PROJECT and name != module
    ]


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that names `module`'s layer."""
    best, index = "", -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    return index


def package_of(module: str) -> str:
    """The package a module belongs to for the package-cycle check: pathgen.ssl.losses.dino → pathgen.ssl."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pathgen" and len(parts) > 1 else parts[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def module_graph() -> dict[str, set[str]]:
    """module → the project modules it imports (anywhere in the file), packages' __init__ left out as
    targets when a submodule is named (importing a.b runs a/__init__ but a/__init__ here imports nothing)."""
    return {m: {name for name, _, _ in project_imports(m) if name in source_files()} for m in source_files()}


def test_every_module_has_a_layer():
    assert not [m for m in source_files() if layer_of(m) < 0]


def test_tiling_never_imports_pathgen_or_torch():
    bad = [
        f"{source_files()[m].relative_to(ROOT)}:{line} imports {name}"
        for m in source_files()
        if m.split(".")[0] == "tiling"
        for name, line, _ in imports_of(m)
        if name.split(".")[0] in ("pathgen", "torch", "torchvision", "timm")
    ]
    assert not bad, "\n".join(bad)


def test_modules_import_only_their_layer_or_below():
    bad = [
        f"{source_files()[m].relative_to(ROOT)}:{line} ({LAYERS[layer_of(m)][0]} layer) imports {name}"
        for m in source_files()
        for name, line, _ in project_imports(m)
        if layer_of(name) > layer_of(m)
    ]
    assert not bad, "\n".join(bad)


def test_libraries_never_import_stages_or_commands():
    upper = ("pathgen.stages", "pathgen.commands", "pathgen.cli", "pathgen.demo")
    bad = [
        f"{m} imports {name}"
        for m in source_files()
        if m.startswith(LIBRARIES)
        for name, _, _ in project_imports(m)
        if name.startswith(upper)
    ]
    assert not bad, "\n".join(bad)


def test_no_cycle_between_modules():
    assert find_cycle(module_graph()) is None, " → ".join(find_cycle(module_graph()) or [])


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        graph.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module)
        )
    cycle = find_cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


def test_in_function_project_imports_are_named_lazy():
    bad = set()
    for module, path in source_files().items():
        lines = path.read_text().splitlines()
        for name, line, in_function in project_imports(module):
            if in_function and not _marked_lazy(lines, line):
                bad.add(
                    f"{path.relative_to(ROOT)}:{line} imports {name} inside a function without "
                    f"a '# {LAZY_MARK}: why' comment"
                )
    assert not bad, "\n".join(sorted(bad))


def _marked_lazy(lines: list[str], line: int) -> bool:
    """The import on 1-based `line`, or the run of import / comment lines just above it, says '# lazy'."""
    index = line - 1
    while index >= 0:
        text = lines[index].strip()
        if f"# {LAZY_MARK}" in text:
            return True
        if text and not text.startswith(("import ", "from ", "#")) and index < line - 1:
            return False
        index -= 1
    return False


def test_no_two_modules_share_a_name_across_libraries():
    """A module name means one thing: no two library modules (or a library and tiling) share a file name;
    commands/NAME.py parsing the arguments of stages/NAME.py is a deliberate pairing, and so, inside one
    package, is a method and its loss (ssl/dino.py, ssl/losses/dino.py)."""
    owners: dict[str, set[str]] = {}
    for module, path in source_files().items():
        if path.name != "__init__.py" and not module.startswith(("pathgen.commands", "pathgen.stages")):
            owners.setdefault(path.stem, set()).add(package_of(module.rsplit(".", 1)[0]))
    stages = {source_files()[m].stem for m in source_files() if m.startswith("pathgen.stages.")}
    for stem in stages:
        owners.setdefault(stem, set()).add("pathgen.stages")
    shared = {stem: sorted(pkgs) for stem, pkgs in owners.items() if len(pkgs) > 1}
    assert shared == KNOWN_HOMONYMS, f"modules sharing a name: {shared}"


# pathgen.config / tiling.config: both packages' own config schema (tiling installs without pathgen);
# left for the tiling (#12) and config (#14) owners to rename if they choose.
KNOWN_HOMONYMS = {"config": ["pathgen", "tiling"]}


@pytest.mark.parametrize("rule", ["tiling imports torch", "library imports a stage", "cycle"])
def test_the_checks_catch_a_violation(rule, monkeypatch):
    """Each check fails on a planted violation (so a passing contract means something)."""
    if rule == "tiling imports torch":
        real = imports_of
        monkeypatch.setitem(
            globals(), "imports_of", lambda m: real(m) + ([("torch", 1, False)] if m == "tiling.grid" else [])
        )
        with pytest.raises(AssertionError, match="tiling/grid.py:1 imports torch"):
            test_tiling_never_imports_pathgen_or_torch()
    elif rule == "library imports a stage":
        real = project_imports
        monkeypatch.setitem(
            globals(),
            "project_imports",
            lambda m: real(m) + ([("pathgen.stages.gensis", 3, False)] if m == "pathgen.ssl.dino" else []),
        )
        with pytest.raises(AssertionError, match="pathgen.ssl.dino imports pathgen.stages.gensis"):
            test_libraries_never_import_stages_or_commands()
        with pytest.raises(AssertionError, match="ssl/dino.py:3"):
            test_modules_import_only_their_layer_or_below()
    else:
        assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
        assert find_cycle({"a": {"b"}, "b": set()}) is None
