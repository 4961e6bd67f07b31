"""Configuration has one home: `Settings.from_env()` (pipelines/lib/settings.py), called by
the entry points, which hand the values down; no library reads the environment.

An AST scan of every module under pipelines/: a read of `os.environ` (any use: get, [],
copy, update, `in`), `os.getenv`, `os.putenv`, `from os import environ/getenv`, or a call
of `Settings.from_env` / `get_settings` is allowed only in the modules named below, each
with the reason it may."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"

#: path (relative to pipelines/, a folder ends with "/") -> why it may read the environment
ALLOWED: dict[str, str] = {
    "lib/settings.py": "the one reader: Settings.from_env() and its variables",
    "cli.py": "entry point `crm`: Settings.from_env() once per command, PYTHONWARNINGS",
    "definitions.py": "entry point of the Dagster code location: Settings.from_env() once",
    "dev.py": "entry point `make dev`: Settings.from_env() once, DAGSTER_HOME for dagster dev",
    "generate/cli.py": "entry point `crm generate`: its default output folder",
    "lib/dbt_plugin.py": "entry point of the project's code in the dbt process: reads what "
    "dbt_env set for that process (the parent's pid, the key) and passes it on",
    "lib/child_env.py": "a child process inherits this process's environment (PATH, HOME, "
    "the Spark profile's variables): the one place that copies it",
    "transform/dbt_cli.py": "dagster-dbt's cli() takes no env: the dbt process's variables "
    "are set only while it starts dbt (the workaround, documented there)",
    # not changed in this step (other work in progress on the package): listed so the scan
    # holds for the rest; remove the entry once its modules take their values as arguments
    "ingest/": "pending: ingest/engine.py falls back to get_settings() for the timezone",
}

READERS = {"environ", "getenv", "putenv", "unsetenv", "environb", "getenvb"}
SETTINGS_READERS = {"from_env", "get_settings"}


def _reads(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in READERS
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                (node.lineno, f"from os import {a.name}") for a in node.names if a.name in READERS
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SETTINGS_READERS:
                found.append((node.lineno, f"{name}()"))
    return found


def _allowed(relative: str) -> bool:
    return any(
        relative == entry or (entry.endswith("/") and relative.startswith(entry))
        for entry in ALLOWED
    )


def test_no_library_reads_the_environment() -> None:
    offenders = []
    for path in sorted(PIPELINES.rglob("*.py")):
        relative = path.relative_to(PIPELINES).as_posix()
        if _allowed(relative):
            continue
        for line, what in _reads(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"pipelines/{relative}:{line}: {what}")
    assert offenders == [], (
        "read the value from Settings (passed as an argument) instead:\n" + "\n".join(offenders)
    )


def test_the_scan_sees_every_form_of_reading() -> None:
    source = (
        "import os\nfrom os import environ\nos.environ.get('A')\nos.getenv('B')\n"
        "x = os.environ['C']\nSettings.from_env()\nget_settings()\n"
    )
    assert sorted(_reads(ast.parse(source))) == [
        (2, "from os import environ"),
        (3, "os.environ"),
        (4, "os.getenv"),
        (5, "os.environ"),
        (6, "from_env()"),
        (7, "get_settings()"),
    ]


def test_every_allowed_entry_exists_and_is_needed() -> None:
    """No stale entry: each names an existing module or folder that reads the environment."""
    for entry in ALLOWED:
        target = PIPELINES / entry
        assert target.exists(), entry
        files = sorted(target.rglob("*.py")) if entry.endswith("/") else [target]
        assert any(_reads(ast.parse(f.read_text(encoding="utf-8"))) for f in files), entry


#: path (relative to pipelines/) -> the upstream gap it works around with Dagster's internals
PRIVATE_ALLOWED: dict[str, str] = {
    "lib/launch.py": "no public call executes a run in-process with the code location's "
    "origin, which the UI's job pages filter on (dagster-io/dagster#17707)",
}


def test_no_module_imports_private_framework_modules() -> None:
    """Dagster and dagster-dbt through their public exports only (no `dagster._core`), but
    in the one module of each workaround (PRIVATE_ALLOWED)."""
    private = []
    for path in sorted(PIPELINES.rglob("*.py")):
        if str(path.relative_to(PIPELINES)) in PRIVATE_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                parts = name.split(".")
                if parts[0] in ("dagster", "dagster_dbt") and any(
                    p.startswith("_") or p == "core" for p in parts[1:]
                ):
                    private.append(f"{path.relative_to(PIPELINES)}:{node.lineno}: {name}")
    assert private == []
