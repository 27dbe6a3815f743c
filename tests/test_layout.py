"""The house's layout: the core's rooms import only the rooms below them, nothing hides a cycle,
and the README's map names every room and module that is there."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "components" / "core"
PREFIX = "foldwise.components.core"
GROUND = {"errors", "options", "jsonio", "columns", "devices"}
# Each room and the rooms it may import (the ground floor always).
MAY_IMPORT = {
    "data": set(),
    "scoring": set(),
    "models": {"data"},
    "training": {"data", "scoring", "models"},
    "search": {"data", "scoring", "models", "training"},
    "results": {"scoring", "models"},
    "serving": {"data", "models"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PREFIX, *parts)).rstrip(".")] = path
    return found


def _imports(path: Path, modules: dict) -> list[tuple[str, bool]]:
    """Every core module ``path`` imports, and whether the import sits inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            names = [f"{node.module}.{a.name}" for a in node.names]
            targets = [n for n in names if n in modules] or [node.module]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith(PREFIX)]
        else:
            continue
        found += [(t, id(node) not in top) for t in targets if t in modules and t != PREFIX]
    return found


def _room(module: str) -> str:
    parts = module[len(PREFIX) + 1:].split(".")
    return "ground" if parts[0] in GROUND else parts[0]


def test_every_core_module_lives_in_a_room_or_on_the_ground_floor():
    rooms = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(MAY_IMPORT)
    loose = {p.stem for p in CORE.glob("*.py")} - {"__init__"}
    assert loose == GROUND


def test_rooms_import_only_the_rooms_below_them_and_never_inside_a_function():
    modules = _modules()
    offenders = []
    for module, path in modules.items():
        if module == PREFIX:
            continue
        room = _room(module)
        allowed = {"ground", room} | MAY_IMPORT.get(room, set())
        for target, inner in _imports(path, modules):
            if inner:
                offenders.append(f"{module} imports {target} inside a function")
            elif _room(target) not in allowed:
                offenders.append(f"{module} ({room}) imports {target} ({_room(target)})")
    assert offenders == []
    assert len(modules) > 40  # the scan really saw the rooms


def test_the_core_import_graph_has_no_cycle():
    modules = _modules()
    edges = {m: {t for t, _ in _imports(p, modules)} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module, path):
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_readme_map_matches_the_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**The core's rooms**"):]
    section = section[:section.index("\n\n", section.index("|---"))]
    rows = dict(re.findall(r"^\| `(\w+)/` \| (.*) \|$", section, re.M))
    assert set(rows) == set(MAY_IMPORT)
    for room, text in rows.items():
        modules = {p.stem for p in (CORE / room).glob("*.py")} - {"__init__"}
        named = set(re.findall(r"`(\w+)`", text.split(" | ")[0]))
        assert named == modules, room
        may = text.split(" | ")[1]
        assert set(re.findall(r"\b(data|scoring|models|training|search|results|serving)\b",
                              may)) == MAY_IMPORT[room], room
    ground = re.search(r"ground floor \(([^)]*)\)", section)
    assert set(re.findall(r"`(\w+)`", ground.group(1))) == GROUND
    dags = {p.stem for p in (ROOT / "pipelines" / "dags").glob("*.py")} - {"__init__"}
    assert dags <= set(re.findall(r"`(\w+)`", readme[readme.index("**Pipelines**"):]))


def test_every_package_of_the_tree_is_installed():
    """A room left out of pyproject.toml's packages would be missing from the wheel and image."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"foldwise"}
    for top, name in (("components", "foldwise.components"), ("pipelines", "foldwise.pipelines")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    assert found == listed
