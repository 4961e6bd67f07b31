"""The documentation a user of the repository reads: the product spec is in the repository
(docs/spec/, the same text as the shared spec when that folder is beside the checkout), every
relative link resolves, and the pages say what is true now, not how it came about (the
history is in git)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "docs" / "spec"
SPEC_FILES = ("metrics.md", "landing-contract.md")


def _shared_spec() -> Path:
    """The product owner's copy of the spec: `shared/spec/` beside the repository (or beside
    one of the folders that hold it, as for a git worktree), on the team's machines."""
    for folder in REPO.parents:
        if (folder / "shared" / "spec").is_dir():
            return folder / "shared" / "spec"
    return REPO.parent / "shared" / "spec"


SHARED_SPEC = _shared_spec()


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# The spec ----------------------------------------------------------------------------


def test_the_spec_is_in_the_repository() -> None:
    for name in SPEC_FILES:
        assert (SPEC / name).is_file(), f"docs/spec/{name} is missing"


@pytest.mark.skipif(
    not SHARED_SPEC.is_dir(),
    reason=f"no shared spec beside the repository ({SHARED_SPEC}): a clone outside the "
    "team's machines has docs/spec/ only, and nothing to compare it with",
)
@pytest.mark.parametrize("name", SPEC_FILES)
def test_the_spec_in_the_repository_is_the_shared_spec(name: str) -> None:
    """docs/spec/ is a copy: when the product owner revises the shared spec, copy it again."""
    ours, theirs = (SPEC / name).read_bytes(), (SHARED_SPEC / name).read_bytes()
    assert ours == theirs, f"docs/spec/{name} differs from {SHARED_SPEC / name}: copy it again"


# Links -------------------------------------------------------------------------------

#: [text](target) and ![alt](target); the target ends at whitespace or the closing bracket.
INLINE_CODE = re.compile(r"`[^`]*`")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(text: str, code: bool = True) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their numbers; without `code`, inline code
    spans (which may run over two lines) are replaced by an empty span."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            kept.append("")
            continue
        kept.append("" if fenced else line)
    prose = "\n".join(kept)
    if not code:
        prose = INLINE_CODE.sub(lambda m: "``" + "\n" * m.group(0).count("\n"), prose)
    return [(n, line) for n, line in enumerate(prose.split("\n"), 1) if line.strip()]


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link to a file: no scheme, no mailto, no in-page anchor."""
    found = []
    for number, line in _prose_lines(text):
        for match in MD_LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue
            found.append((number, target.split("#", 1)[0]))
    return found


def test_relative_links_are_found() -> None:
    text = (
        "See [a](a.md), [b](../b.md#part), ![c](img/c.svg), [web](https://x.org/y.md),\n"
        "[anchor](#here), [mail](mailto:a@b.c) and <a.md>.\n"
        "```\n[not a link](inside/code.md)\n```\n"
    )
    assert relative_links(text) == [(1, "a.md"), (1, "../b.md"), (1, "img/c.svg")]


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for page in _pages():
        for number, target in relative_links(page.read_text(encoding="utf-8")):
            resolved = (page.parent / target).resolve()
            inside = resolved == REPO or REPO in resolved.parents
            if not inside or not resolved.exists():
                why = "outside the repository" if not inside else "missing"
                broken.append(f"{_rel(page)}:{number}: {target} ({why})")
    assert not broken, "links that do not resolve to a file of the repository:\n" + "\n".join(
        broken
    )


#: A mention of the spec's files: a bare name (the file of docs/spec/) or a path.
SPEC_MENTION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*(?:metrics|landing-contract)\.md)\b")


def test_every_spec_mention_in_the_dbt_project_resolves() -> None:
    """Descriptions in the dbt project's yml (shown in dbt docs) and its SQL comments name
    the spec by file: a bare `metrics.md` is docs/spec/metrics.md, a path is read from the
    repository's root."""
    broken = []
    files = sorted((REPO / "dbt_project").rglob("*.yml")) + sorted(
        (REPO / "dbt_project").rglob("*.sql")
    )
    files = [f for f in files if not {"target", "dbt_packages", "logs"} & set(f.parts)]
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in SPEC_MENTION.finditer(line):
                mention = match.group(1)
                resolved = SPEC / mention if "/" not in mention else REPO / mention
                if not resolved.is_file():
                    broken.append(f"{_rel(path)}:{number}: {mention}")
    assert not broken, "spec mentions that name no file of docs/spec/:\n" + "\n".join(broken)


def test_nothing_points_at_the_shared_spec_outside_the_repository() -> None:
    """A user's clone has no ../shared/: docs, docstrings and the dbt project cite docs/spec/."""
    found = []
    files = [*_pages()]
    for code in ("pipelines", "benchmarks", "tests/reference"):
        files += sorted((REPO / code).rglob("*.py"))
    files += sorted((REPO / "dbt_project").rglob("*.yml")) + sorted(
        (REPO / "dbt_project").rglob("*.sql")
    )
    for path in files:
        if "target" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"(?<![\w/])(?:\.\./)*shared/spec\b", line):
                found.append(f"{_rel(path)}:{number}: {line.strip()}")
    assert not found, "cite docs/spec/ instead:\n" + "\n".join(found)


# Narration ---------------------------------------------------------------------------

#: A commit hash: 7 to 40 hex digits with a letter and a digit among them, standing alone.
COMMIT = re.compile(r"(?<![\w/-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])")
#: Words that tell the story of the code rather than describe it.
NARRATION = re.compile(
    r"\b(?:previously|formerly|used to|before this change|after this change|"
    r"as before|sessions?)\b",
    re.IGNORECASE,
)
#: A date of a run (not a date of the data: those are as-of dates, examples and ranges).
RUN_DATE = re.compile(
    r"(?<!as )\b(?:on|since|until|from|of|in|at|before|after|run|runs|measured|benchmarked)"
    r"\s+(?:the\s+)?\d{4}-\d{2}-\d{2}\b(?!\s*(?:\.\.|–|-|to)\s*\d)",
    re.IGNORECASE,
)
#: Legitimate uses, matched against the prose line (inline code removed).
ALLOWED = (
    re.compile(r"\bTableau session\b", re.I),  # an analyst's open session in Tableau
    re.compile(r"\bsession (?:settings|method)\b", re.I),  # Spark's SparkSession, dbt-spark
    re.compile(r"\b(?:is|are|be|been|being|was|were|gets?)\s+used to\b", re.I),  # passive
    re.compile(r"\bcounted from \d{4}-", re.I),  # a date of the data (CDNOW's weeks)
)
#: Pages that are copies of the product owner's text, not ours to edit.
NOT_OURS = {"docs/spec/metrics.md", "docs/spec/landing-contract.md"}


def narration_markers(text: str) -> list[tuple[int, str]]:
    """(line, marker) of every commit hash, narrating word and run date in the prose."""
    found = []
    for number, prose in _prose_lines(text, code=False):
        for pattern in (COMMIT, NARRATION, RUN_DATE):
            for match in pattern.finditer(prose):
                context = prose[max(0, match.start() - 20) : match.end() + 20]
                if any(allowed.search(context) for allowed in ALLOWED):
                    continue
                found.append((number, match.group(0)))
    return found


@pytest.mark.parametrize(
    ("line", "markers"),
    [
        ("At commit 2a87f85 the night took 312 s.", ["2a87f85"]),
        ("the range e6c7536..332d20b", ["e6c7536", "332d20b"]),
        ("In the sixth session we made it faster.", ["session"]),
        ("The model previously read every row; it used to need a rebuild.",
         ["previously", "used to"]),
        ("In the demo run of 2026-11-25 the night took 114 s.", ["of 2026-11-25"]),
        ("## Standing on 2026-11-28", ["on 2026-11-28"]),
        # not narration
        ("`crm run --date 2026-10-31` and `sha256 0a1b2c3d4e5f` in code", []),
        ("as of 2026-10-31, the period 2025-11-01 .. 2026-10-31", []),
        ("an analyst's open Tableau session blocks it; its session settings", []),
        ("the key is used to sign; the `method:\nsession` of dbt-spark", []),
        ("deliveries from 2026-05-05 to 2026-10-31; 1,302 s; 0.25; md5 and decade", []),
    ],
)  # fmt: skip
def test_narration_markers_are_found(line: str, markers: list[str]) -> None:
    assert [marker for _, marker in narration_markers(line)] == markers


def test_the_docs_describe_the_product_not_its_history() -> None:
    """No commit hashes, sessions, "previously" / "used to" or dates of runs in README.md
    and docs/: the history is in git; a page says what is true now and why."""
    found = []
    for page in _pages():
        if _rel(page) in NOT_OURS:
            continue
        for number, marker in narration_markers(page.read_text(encoding="utf-8")):
            found.append(f"{_rel(page)}:{number}: {marker!r}")
    assert not found, "development narration (say what is true now, and why):\n" + "\n".join(found)
