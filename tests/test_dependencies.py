"""Declared dependencies stay in step: every third-party module the code imports is
declared in pyproject.toml, the requirement files pin what pyproject pins, and each lock
pins every declared package at its declared version, with hashes.

No network: the test reads pyproject.toml, the requirement and lock files, the code's
import statements (parsed, never run) and the metadata of the installed distributions
(the test set-up installs requirements-dev.lock, which holds every declared package).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top-level folders whose code only tests, benchmarks and tools run: they may import the
#: dev extra too. Every other module (app.py and the packages) is
#: runtime code and may import only the runtime dependencies and the optional extras
#: below.
DEV_FOLDERS = {"tests", "bench", "tools"}
RUNTIME_EXTRAS = ("spark",)
#: Folders that hold no project code.
NOT_CODE = {"var", "node_modules", "__pycache__", "test-artifacts"}

#: Each extra and the requirement file that pins it (requirements.txt: the runtime set).
EXTRA_FILES = {"spark": "requirements-spark.txt", "dev": "requirements-dev.txt"}
#: Each lock and the groups it pins ("" = the runtime dependencies).
LOCKS = {"requirements.lock": ("",), "requirements-dev.lock": ("", "spark", "dev")}

RELOCK = "regenerate the locks with ./dev lock"

#: name[extras]==version, nothing else: every declared package is pinned.
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([A-Za-z0-9._, -]*)\])?\s*==\s*([A-Za-z0-9.+!_-]+)")


def canonical(name: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(text: str, where: str) -> tuple[str, str]:
    """(canonical name, version) of one ``name[extras]==version`` line; the extras, when
    there are any, are kept with the version (``1.2[a,b]``) so that files compare them."""
    match = PIN.fullmatch(text.strip())
    assert match, f"{where}: {text!r} is not pinned as name==version"
    extras = sorted(canonical(e.strip()) for e in (match[2] or "").split(",") if e.strip())
    return canonical(match[1]), match[3] + (f"[{','.join(extras)}]" if extras else "")


def version_of(pin: str) -> str:
    """The version of a pin as parse_pin returns it (without the extras)."""
    return pin.split("[", 1)[0]


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@cache
def declared() -> dict[str, dict[str, str]]:
    """Each group ("" for the runtime dependencies, then each extra): name -> version
    (with the extras asked for, as parse_pin gives it)."""
    project = pyproject()
    groups = {"": project.get("dependencies", [])} | project.get("optional-dependencies", {})
    out: dict[str, dict[str, str]] = {}
    for group, lines in groups.items():
        pins: dict[str, str] = {}
        for line in lines:
            name, version = parse_pin(line, f"pyproject.toml [{group or 'dependencies'}]")
            assert name not in pins, f"pyproject.toml: {name} twice in {group or 'dependencies'}"
            pins[name] = version
        out[group] = pins
    return out


def read_requirements(name: str) -> tuple[dict[str, str], list[str]]:
    """(pins, included files) of one requirement file."""
    pins: dict[str, str] = {}
    includes: list[str] = []
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            includes.append(line.split(None, 1)[1].strip())
            continue
        package, version = parse_pin(line, name)
        assert package not in pins, f"{name}: {package} twice"
        pins[package] = version
    return pins, includes


def read_lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of one lock file (requirements format with --hash)."""
    text = (ROOT / name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    entries: dict[str, tuple[str, list[str]]] = {}
    for logical in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        tokens = logical.split()
        if not tokens:
            continue
        assert not tokens[0].startswith("-"), f"{name}: unexpected option line {logical!r}"
        package, version = parse_pin(tokens[0], name)
        hashes = [t.split("=", 1)[1] for t in tokens[1:] if t.startswith("--hash=")]
        entries[package] = (version, hashes)
    return entries


def test_declared_dependencies_are_pinned_once():
    groups = declared()
    assert set(groups) == {""} | set(EXTRA_FILES), (
        "each extra in pyproject.toml needs its requirement file (EXTRA_FILES here) and a lock"
    )
    seen: dict[str, str] = {}
    for group, pins in groups.items():
        for name in pins:
            assert name not in seen, f"pyproject.toml: {name} in both {seen[name]!r} and {group!r}"
            seen[name] = group


def test_requirement_files_pin_what_pyproject_pins():
    groups = declared()
    runtime, includes = read_requirements("requirements.txt")
    assert runtime == groups[""], "requirements.txt differs from pyproject.toml [project] dependencies"
    assert includes == []
    spark, includes = read_requirements(EXTRA_FILES["spark"])
    assert spark == groups["spark"], f"{EXTRA_FILES['spark']} differs from the 'spark' extra"
    assert includes == []
    dev, includes = read_requirements(EXTRA_FILES["dev"])
    assert dev == groups["dev"], f"{EXTRA_FILES['dev']} differs from the 'dev' extra"
    assert sorted(includes) == sorted(["requirements.txt", EXTRA_FILES["spark"]]), (
        f"{EXTRA_FILES['dev']} should include requirements.txt and {EXTRA_FILES['spark']}"
    )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_every_declared_package_with_hashes(lock):
    entries = read_lock(lock)
    for group in LOCKS[lock]:
        for name, pin in declared()[group].items():
            version = version_of(pin)
            assert name in entries, f"{lock} does not pin {name}: {RELOCK}"
            assert entries[name][0] == version, (
                f"{lock} pins {name}=={entries[name][0]}, pyproject.toml {version}: {RELOCK}"
            )
    unhashed = sorted(name for name, (_, hashes) in entries.items() if not hashes)
    assert not unhashed, f"{lock}: no --hash for {unhashed}: {RELOCK}"


def test_locks_agree():
    """`./dev run` and `./dev test` share one .venv: a package both locks pin is pinned at
    one version, or each command would reinstall it."""
    locks = {name: read_lock(name) for name in LOCKS}
    first, *others = sorted(locks)
    for other in others:
        for name in locks[first].keys() & locks[other].keys():
            assert locks[first][name][0] == locks[other][name][0], (
                f"{name}: {first} pins {locks[first][name][0]}, {other} {locks[other][name][0]}: {RELOCK}"
            )


# --- every imported module is declared ---------------------------------------------------

#: The start of a line that may begin an import statement. Parsing every file whole costs
#: about a second on this tree, so only these statements are parsed (with ast, so prose in
#: a docstring that happens to start with "import" or "from" is skipped as a syntax error).
IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from)[ \t]+[\w.]", re.M)
#: Calls that name a module in a string literal: find_spec, import_module, __import__.
DYNAMIC_IMPORT = re.compile(r"\b(?:find_spec|import_module|__import__)\(\s*[\"']([\w.]+)[\"']")


def code_files() -> list[tuple[Path, bool]]:
    """(path, is_dev) of every project .py file, outside .venv and hidden folders."""
    files: list[tuple[Path, bool]] = []
    for entry in sorted(ROOT.iterdir()):
        if entry.name.startswith(".") or entry.name in NOT_CODE:
            continue
        if entry.is_file() and entry.suffix == ".py":
            files.append((entry, False))
        elif entry.is_dir():
            for path in sorted(entry.rglob("*.py")):
                parts = path.relative_to(ROOT).parts
                if any(p.startswith(".") or p in NOT_CODE for p in parts):
                    continue
                files.append((path, entry.name in DEV_FOLDERS))
    return files


def import_statement(source: str, start: int) -> str:
    """The whole statement that starts at ``start``: one line, a parenthesised list or
    lines joined by backslashes."""
    end = source.find("\n", start)
    end = len(source) if end < 0 else end
    line = source[start:end]
    code = line.split("#", 1)[0]
    if "(" in code and ")" not in code:
        close = source.find(")", start)
        return source[start : close + 1 if close >= 0 else len(source)]
    while line.endswith("\\") and end < len(source):
        following = source.find("\n", end + 1)
        end = len(source) if following < 0 else following
        line = source[start:end]
    return line


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one file, at any depth (inside functions,
    ``try`` blocks, ``if TYPE_CHECKING``), and of modules named by string in find_spec,
    import_module or __import__."""
    source = path.read_text(encoding="utf-8")
    names: set[str] = set()
    for match in IMPORT_LINE.finditer(source):
        statement = import_statement(source, match.start()).strip()
        try:
            body = ast.parse(statement).body
        except SyntaxError:
            continue
        for node in body:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    if "find_spec(" in source or "import_module(" in source or "__import__(" in source:
        names.update(module.split(".")[0] for module in DYNAMIC_IMPORT.findall(source))
    return names


def local_names(folder: Path) -> set[str]:
    """Modules and packages importable from a folder's own files (a script's siblings)."""
    return {
        p.stem if p.suffix == ".py" else p.name for p in folder.iterdir() if p.suffix == ".py" or p.is_dir()
    }


def top_level_modules(distribution: str) -> set[str]:
    """The importable top-level names an installed distribution provides."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        pytest.fail(
            f"{distribution} is declared but not installed here: run ./dev test (it installs the dev lock)"
        )
    listed = dist.read_text("top_level.txt")
    if listed:
        return set(listed.split())
    names: set[str] = set()
    for line in (dist.read_text("RECORD") or "").splitlines():
        path = line.split(",", 1)[0]
        top, _, rest = path.partition("/")
        if top.endswith((".dist-info", ".data")) or top.startswith("..") or top == "__pycache__":
            continue
        if rest:
            names.add(top)
        elif top.endswith(".py"):
            names.add(top[:-3])
        elif top.endswith((".so", ".pyd")):
            names.add(top.split(".", 1)[0])
    return names


def provider_hint(module: str) -> str:
    """Which installed distribution provides a module (only asked when one is missing)."""
    found = metadata.packages_distributions().get(module)
    return f"provided by {', '.join(sorted(set(found)))}" if found else "installed by no distribution here"


def test_every_imported_module_is_declared():
    groups = declared()
    runtime_dists = set(groups[""]).union(*(groups[e] for e in RUNTIME_EXTRAS))
    all_dists = set().union(*groups.values())
    provides = {dist: top_level_modules(dist) for dist in sorted(all_dists)}
    runtime_modules = set().union(*(provides[d] for d in runtime_dists))
    all_modules = set().union(*provides.values())

    project = local_names(ROOT)
    stdlib = set(sys.stdlib_module_names)
    missing: dict[str, set[str]] = {}
    for path, is_dev in code_files():
        allowed = all_modules if is_dev else runtime_modules
        local = project | local_names(path.parent)
        for module in imported_modules(path) - stdlib - local - allowed:
            missing.setdefault(module, set()).add(str(path.relative_to(ROOT)))

    problems = []
    for module, where in sorted(missing.items()):
        scope = "declared only in the dev extra, " if module in all_modules else ""
        problems.append(f"{module} ({scope}{provider_hint(module)}) imported by {', '.join(sorted(where))}")
    assert not problems, (
        "imported but not declared in pyproject.toml [project] dependencies (or the dev extra, "
        "for tests/, bench/ and tools/):\n  " + "\n  ".join(problems)
    )
