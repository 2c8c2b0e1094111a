"""The code's habits, checked with the test command: docstring examples run and hold,
the pure packages type-check, and lint, format and the import contracts pass.

Each tool runs from the virtual environment of the interpreter running the tests, in
the project root, and its output is the failure message.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Packages whose every module's examples run (pure, or importable without a store).
DOCTEST_PACKAGES = ("geo", "ops", "layers", "views", "reports", "data.ingest.protocols")
#: Single modules whose examples run besides.
DOCTEST_MODULES = ("data.demo.replay", "data.ingest.importer", "data.ingest.http_api")


def _modules() -> list[str]:
    names = list(DOCTEST_MODULES)
    for package in DOCTEST_PACKAGES:
        names.append(package)
        path = ROOT / package.replace(".", "/")
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])]
    return sorted(set(names))


@functools.cache
def _run_examples(name: str) -> tuple[int, list[str]]:
    """(examples run, one report per failing example) of module ``name``'s docstrings."""
    module = importlib.import_module(name)
    failures: list[str] = []
    runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS)  # as pytest's doctests
    attempted = 0
    for test in doctest.DocTestFinder().find(module, name):
        if not test.examples:
            continue
        out: list[str] = []
        result = runner.run(test, out=out.append, clear_globs=True)
        attempted += result.attempted
        if result.failed:
            failures.append("".join(out))
    return attempted, failures


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_hold(name):
    _attempted, failures = _run_examples(name)
    assert not failures, f"{len(failures)} failing example(s) in {name}:\n" + "\n".join(failures)


def test_docstring_examples_are_there():
    """Every package's examples do run (a finder or module list finding none would pass above)."""
    run = {name: _run_examples(name)[0] for name in _modules()}
    per_package = {
        p: sum(n for m, n in run.items() if m == p or m.startswith(p + ".")) for p in DOCTEST_PACKAGES
    }
    assert all(per_package.values()), f"examples run per package: {per_package}"


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the development requirements (./dev test does)")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _output(run: subprocess.CompletedProcess) -> str:
    return f"exit {run.returncode}\n{run.stdout}{run.stderr}"


@pytest.mark.slow
def test_pure_packages_type_check():
    """basedpyright, configured in pyproject.toml ``[tool.basedpyright]``: no error."""
    run = _tool("basedpyright", "--outputjson")
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"basedpyright gave no report:\n{_output(run)}")
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    lines = [
        f"{Path(d['file']).relative_to(ROOT)}:{d['range']['start']['line'] + 1}: {d['message']}"
        f" ({d.get('rule', '')})"
        for d in errors
    ]
    assert report["summary"]["errorCount"] == 0, f"basedpyright: {len(errors)} error(s)\n" + "\n".join(lines)


def test_ruff_check():
    run = _tool("ruff", "check", "--output-format", "concise", ".")
    assert run.returncode == 0, f"ruff check:\n{_output(run)}"


def test_ruff_format():
    run = _tool("ruff", "format", "--check", ".")
    assert run.returncode == 0, f"ruff format --check (run `ruff format .`):\n{_output(run)}"


def test_import_contracts():
    """import-linter's contracts of pyproject.toml ``[tool.importlinter]``."""
    run = _tool("lint-imports", "--no-cache")
    assert run.returncode == 0, f"lint-imports:\n{_output(run)}"
