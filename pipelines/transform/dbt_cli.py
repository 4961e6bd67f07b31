"""The project's dbt resource: dagster-dbt's `DbtCliResource`, with the workarounds for what
dagster-dbt 0.29 lacks, in this one module.

1. **The dbt process's environment.** `DbtCliResource.cli()` takes no environment: it starts
   dbt with a copy of this process's `os.environ` (plus its own DBT_* variables). The
   profile's inputs (warehouse file, restricted store, key file, memory limit, the parent
   pid of the child guard) differ per deployment, so `cli()` here takes them as `env` and
   puts them into `os.environ` only while dagster-dbt builds the child's environment and
   starts dbt, then restores the previous values: no asset changes the process's
   environment, and a second deployment in the same process (tests) never sees the first
   one's files. (No upstream issue for an `env` argument was found as of dagster-dbt
   0.29.27; drop `_scoped_environ` once `cli()` takes one.)
2. **Two costs per dbt step this project does not need** (about 3 s per step, two steps a
   night), both in private methods of `DbtCliResource`, which has no public switch for them:
   - `_cli_version` started `dbt --version` in a subprocess (1.7 s: dbt-core also asks PyPI
     for its latest release, dbt-labs/dbt-core#6085) to learn the version of the dbt
     executable. The executable is the one of this environment (`dbt_executable`), so its
     version is that of the installed dbt-core package (tests/test_definitions.py compares
     the two);
   - `_initialize_dbt_core_adapter` opened a dbt adapter in this process (1.3 s: the
     project, the profile, DuckDB), used only to fetch row counts or column metadata for the
     materialization events (`.fetch_row_counts()`, `.fetch_column_metadata()`), which we do
     not ask for. Without one it behaves as it does when opening one fails (`adapter=None`).
   tests/test_definitions.py pins both, so an upgrade that renames them fails loudly.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliInvocation, DbtCliResource
from packaging import version


def dbt_executable() -> str:
    """The `dbt` of this environment (next to this Python), else the one on the PATH."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


@contextmanager
def _scoped_environ(extra: Mapping[str, str]) -> Iterator[None]:
    """`extra` in os.environ for the duration of the block, the previous values after."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class CrmDbtCliResource(DbtCliResource):
    """`DbtCliResource` whose `cli()` takes the dbt process's environment (see the module
    docstring) and skips the version probe and the in-process adapter."""

    def cli(  # type: ignore[override]
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> DbtCliInvocation:
        """`DbtCliResource.cli(args, **kwargs)` with `env` added to the dbt process's
        environment (the invocation starts dbt before it returns)."""
        with _scoped_environ(env or {}):
            return super().cli(args, **kwargs)

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None
