"""The size of the code: every Python file of pipelines/, benchmarks/ and tests/ stays under
800 lines, so a file holds one subject a reader can take in (split a longer one along its
seams; helpers shared by several test files go to tests/support/)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("pipelines", "benchmarks", "tests")
MAX_LINES = 800  # a file of this many lines or more is too long


def oversized(root: Path) -> list[str]:
    """'<path>: <n> lines' of every Python file under the folders of `root` with `MAX_LINES`
    lines or more, longest first."""
    sizes = [
        (len(path.read_text(encoding="utf-8").splitlines()), path.relative_to(root).as_posix())
        for folder in FOLDERS
        for path in (root / folder).rglob("*.py")
    ]
    return [f"{name}: {n} lines" for n, name in sorted(sizes, reverse=True) if n >= MAX_LINES]


def test_every_python_file_is_under_800_lines():
    assert oversized(REPO) == [], f"split these files (under {MAX_LINES} lines each)"


def test_a_file_of_800_lines_is_named_with_its_size(tmp_path: Path):
    (tmp_path / "tests" / "sub").mkdir(parents=True)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "tests" / "sub" / "test_long.py").write_text("x = 1\n" * 800)
    (tmp_path / "tests" / "test_short.py").write_text("x = 1\n" * 799)
    (tmp_path / "pipelines" / "notes.txt").write_text("x\n" * 900)  # not Python
    assert oversized(tmp_path) == ["tests/sub/test_long.py: 800 lines"]
