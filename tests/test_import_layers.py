"""The layers of `pipelines`: each package imports only the packages below it, never one above
and never round in a circle (README, "Layout"). Imports inside functions count too: a lazy
import is still a dependency.

Order, bottom to top (a package may import any package on a lower floor):

    lib          settings, DuckDB, pseudonyms, identifier normalisation, shared resources,
                 the guards the load and every dbt run call (key check, erasure purge)
    generate     the demo data generator
    ingest       landing files -> raw
    transform    dbt (raw -> staging -> marts)
    models       CLV scores
    quality      GX suites, the quality gate
    publish      serving tables, report, releases
    targets      the write-back targets
    business_calendar  the calendar step (writes calendar.business_days before dbt)
    spark        the Parquet export for Spark
    privacy      erasure (`crm forget`) and key rotation
    composition  cli, dev, orchestrate, definitions: they compose the layers

Outside the package, and never imported by it: `benchmarks/` (the lab, `make bench`) and the
tests' code, `tests/reference/` (the pandas oracle the tests check the warehouse against,
imported as `reference`) and `tests/support/`. The oracle imports only `pipelines.lib`.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipelines"
#: The tests' oracle, imported by the tests as `reference` (tests/ is on sys.path).
ORACLE = REPO / "tests" / "reference"
#: Top-level names of the code outside the package, which the package never imports.
OUTSIDE = {"benchmarks", "reference", "support", "tests"}

LAYERS: list[set[str]] = [
    {"lib"},
    {"generate"},
    {"ingest"},
    {"transform"},
    {"models"},
    {"quality"},
    {"publish"},
    {"targets", "business_calendar"},
    {"spark"},
    {"privacy"},
    {"cli", "dev", "orchestrate", "definitions"},
]
FLOOR = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path, root: Path) -> tuple[str, list[str]]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), parts
    return ".".join(parts), parts[:-1]


def _imports(root: Path = PACKAGE) -> set[tuple[str, str]]:
    """(importing module, imported module) for every import, by a module under `root`, of a
    `pipelines` module or of the code outside the package."""
    found = set()
    for path in root.rglob("*.py"):
        name, package = _module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                targets = [".".join([*base, *([node.module] if node.module else [])])]
            else:
                continue
            found |= {(name, t) for t in targets if t.split(".")[0] in {"pipelines", *OUTSIDE}}
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _top(module: str) -> str:
    return module.split(".")[0]


def upward_imports(imports: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The imports that break the order: a `pipelines` module importing a higher layer or
    the code outside the package, the oracle importing `pipelines` above `lib`."""
    bad = set()
    for importer, imported in imports:
        if _top(importer) == "reference":
            if _top(imported) == "pipelines" and _package(imported) != "lib":
                bad.add((importer, imported))
            continue
        if _top(imported) in OUTSIDE:
            bad.add((importer, imported))
            continue
        src, dst = _package(importer), _package(imported)
        if src == dst or not src or not dst:
            continue
        if FLOOR[dst] > FLOOR[src]:
            bad.add((importer, imported))
    return bad


def test_every_package_has_a_floor() -> None:
    packages = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    packages -= {"__init__", "__pycache__"}
    assert packages <= set(FLOOR), f"packages without a layer: {sorted(packages - set(FLOOR))}"


def test_no_package_imports_a_layer_above_it() -> None:
    bad = sorted(upward_imports(_imports() | _imports(ORACLE)))
    assert not bad, "imports of a higher layer:\n" + "\n".join(f"{a} -> {b}" for a, b in bad)


def test_no_circle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported in _imports():
        if _top(imported) != "pipelines":
            continue
        src, dst = _package(importer), _package(imported)
        if src and dst and src != dst:
            graph.setdefault(src, set()).add(dst)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as circle:
        pytest.fail(f"import circle between packages: {' -> '.join(circle.args[1])}")


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        ({("pipelines.lib.duck", "pipelines.ingest.mapping")}, 1),  # lib importing ingest
        ({("pipelines.privacy.erasure", "reference.identity")}, 1),  # the oracle
        ({("pipelines.cli", "benchmarks.scale")}, 1),  # the lab
        ({("pipelines.publish.report", "support.e2e")}, 1),  # the tests' helpers
        ({("reference.metrics", "pipelines.transform.project")}, 1),
        ({("reference.metrics", "pipelines.lib.settings")}, 0),
        ({("reference.metrics", "reference.identity")}, 0),
        ({("pipelines.cli", "pipelines.orchestrate")}, 0),  # composition, same floor
        ({("pipelines.spark", "pipelines.transform.project")}, 0),
    ],
)
def test_the_check_sees_an_upward_import(imports: set, expected: int) -> None:
    assert len(upward_imports(imports)) == expected


def test_the_scan_reads_the_oracle() -> None:
    """The oracle's imports are in the scan (a moved folder would leave the check blind)."""
    oracle = _imports(ORACLE)
    assert ("reference.metrics.customers", "pipelines.lib.pseudonym") in oracle
    assert any(_top(imported) == "reference" for _, imported in oracle)
