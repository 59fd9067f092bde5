"""Documentation cross-references: every ``docs/theory.md §N`` citation names a section that exists.

Docstrings, docs, tests and benchmarks cite the theory page by section number; a renumbered or
missing section would leave them pointing nowhere. The oracle is the list of headings of
docs/theory.md itself.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
# "docs/theory.md §8.4", "docs/theory.md §2, §3", "docs/theory.md §2–§3", "docs/theory.md §7.6, §8"
CITATION = re.compile(r"theory\.md((?:[` ,–-]*§\d+(?:\.\d+)?)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")


def _sections() -> set[str]:
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", THEORY.read_text(encoding="utf-8"), re.M)
    return set(heads)


def _cited() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for sub in ("mor_lqo", "tests", "benchmarks"):
        files += (ROOT / sub).rglob("*.py")
    for path in files:
        for m in CITATION.finditer(path.read_text(encoding="utf-8")):
            out.setdefault(str(path.relative_to(ROOT)), set()).update(SECTION.findall(m.group(1)))
    return out


def test_theory_outline_is_complete():
    # the fixed outline that the citations use: 11 sections with these subsections
    expected = {str(i) for i in range(1, 12)} | {
        "1.1", "1.2", "1.3", "2.1", "2.2", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "7.7",
        "8.1", "8.2", "8.3", "8.4", "8.5", "10.1", "10.2", "10.3", "11.1", "11.2", "11.3"}
    assert _sections() == expected


def test_every_theory_citation_resolves():
    sections = _sections()
    cited = _cited()
    assert cited, "no citations found: the pattern is broken"
    missing = {f: sorted(s - sections) for f, s in cited.items() if s - sections}
    assert not missing, f"citations of non-existent docs/theory.md sections: {missing}"
