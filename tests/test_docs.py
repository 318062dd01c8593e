"""The facts the code relies on live in the repository: every docs/… file a source file cites exists,
and nothing cites a file outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for folder in ("pathgen", "tiling", "configs", "benchmarks")
    for p in sorted((ROOT / folder).rglob("*"))
    if p.suffix in (".py", ".yaml") and p.is_file() and "package_data" not in p.parts
]
CITATION = re.compile(r"(?<![`\w/])docs/[\w/.-]+\.md")  # ``docs/x.md`` in backticks: another repo's file


def test_cited_docs_exist():
    cited = {m.group(0) for p in SOURCES for m in CITATION.finditer(p.read_text())}
    assert len(cited) >= 5
    assert not [c for c in cited if not (ROOT / c).is_file()]


def test_no_source_cites_a_file_outside_the_repository():
    assert not [p.relative_to(ROOT) for p in SOURCES if "REFERENCES §" in p.read_text()]
