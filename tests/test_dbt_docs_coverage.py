"""dbt docs read as the project's own documentation: an overview page, every model with a
description and an owner, every column of every model and seed described, and no
description citing a spec file the reader does not have.

The fast tests read the manifest `dbt parse` writes (the columns declared in the yml); the
end-to-end test reads the catalog of the warehouse a night built (every column the
models really have, declared or not), which is what dbt docs shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.transform.project import ensure_manifest

PROJECT = "crm_warehouse"
#: A mention of the metric dictionary by its bare name (the reader has docs/spec/metrics.md).
BARE_SPEC = re.compile(r"(?<![\w/.-])metrics\.md\b|shared/spec\b")


def _nodes(manifest: dict) -> list[dict]:
    return [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed") and node["package_name"] == PROJECT
    ]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(ensure_manifest().read_text())


def test_every_model_and_seed_has_a_description_and_an_owner(manifest: dict) -> None:
    nodes = _nodes(manifest)
    assert len([n for n in nodes if n["resource_type"] == "model"]) >= 30
    undescribed = [n["name"] for n in nodes if not n["description"].strip()]
    assert undescribed == []
    no_owner = [n["name"] for n in nodes if not n["config"]["meta"].get("owner")]
    assert no_owner == []


def test_every_declared_column_is_described(manifest: dict) -> None:
    missing = [
        f"{n['name']}.{column}"
        for n in _nodes(manifest)
        for column, spec in n["columns"].items()
        if not spec["description"].strip()
    ]
    assert missing == []


def test_descriptions_cite_the_spec_in_the_repository(manifest: dict) -> None:
    texts = [(n["name"], n["description"]) for n in _nodes(manifest)]
    texts += [
        (f"{n['name']}.{c}", s["description"])
        for n in _nodes(manifest)
        for c, s in n["columns"].items()
    ]
    texts += [(name, source["description"]) for name, source in manifest["sources"].items()]
    texts += [(d["name"], d["block_contents"]) for d in manifest["docs"].values()]
    bare = [name for name, text in texts if BARE_SPEC.search(text)]
    assert bare == [], "name docs/spec/metrics.md and its section instead"


def test_the_overview_page_is_the_projects(manifest: dict) -> None:
    overview = manifest["docs"][f"doc.{PROJECT}.__overview__"]["block_contents"]
    assert overview.startswith("# CRM analytics warehouse")
    for topic in ("## The layers", "## How to read a KPI", "## Where targets live"):
        assert topic in overview
    # the layers in build order, as the lineage graph shows them
    layers = ["Staging", "Identity", "Dimensions", "Segments", "CLV", "KPI marts"]
    positions = [overview.index(f"**{layer}") for layer in layers[:-1]]
    assert positions == sorted(positions)
    for column in ("maturity_days", "pending", "is_complete"):
        assert f"`{column}`" in overview


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_every_built_column_is_described(crm_home: Path) -> None:
    """Every column of every model and seed in the catalog of the night's dbt docs (what the
    warehouse holds) has a description in dbt docs."""
    target = crm_home / "warehouse" / "dbt_docs_target"
    built = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    nodes = {f"{n['resource_type']}.{PROJECT}.{n['name']}": n for n in _nodes(built)}
    assert len(catalog["nodes"]) >= 40
    missing = []
    for unique_id, entry in catalog["nodes"].items():
        if unique_id not in nodes:
            continue
        declared = {c.lower(): s["description"] for c, s in nodes[unique_id]["columns"].items()}
        missing += [
            f"{unique_id}.{column}"
            for column in entry["columns"]
            if not declared.get(column.lower(), "").strip()
        ]
    assert missing == [], f"{len(missing)} columns without a description: {missing[:20]}"
