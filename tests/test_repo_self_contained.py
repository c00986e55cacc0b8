"""The repository is self-contained: it cites only documents a user of it has.

- No tracked text file cites the product specification the project was built from
  (a document users never get): neither its section sign form, nor "section N", nor
  the bare upper-case word as a citation. Code and docs cite ``docs/`` or the README.
- No tracked text file cites a tracker issue by its number.
- Every relative link in README.md and docs/**/*.md points to a file or folder that
  exists in the repo, and an anchor into a markdown file names one of its headings.

The forbidden words are assembled at run time so that this file does not match itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_WORD = "S" + "PEC"
_ISSUE = "is" + "sue"
# Upper case and whole word only: "specific", "SPECIFIC", "_LATEX_SPECIAL", "spec" (a device
# string) or "SPEC_VERSION" are not citations; "<WORD> §6", "<WORD> section 2", "<WORD>'s
# target" and a bare "(<WORD>)" are.
CITATION = re.compile(rf"(?<![\w.]){_WORD}(?![\w])")
ISSUE_NUMBER = re.compile(r"\b[Ii]ssues? ?#?\d+\b")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout (git ls-files failed: {e})")
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        files.append(path)
    return files


def _offending_lines(pattern: re.Pattern, files: list[Path]) -> list[str]:
    hits = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), start=1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:120]}")
    return hits


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link or image outside fenced code blocks and code spans."""
    links, in_fence = [], False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            prose = re.sub(r"`[^`]*`", "", line)
            links.extend((lineno, m.group(1)) for m in LINK.finditer(prose))
    return links


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, in_fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _broken_links(md: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for lineno, target in _links(md.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (md.parent / file_part).resolve() if file_part else md
        where = f"{md.relative_to(root)}:{lineno}: {target}"
        if not dest.exists():
            broken.append(f"{where} (no such file)")
        elif root not in dest.parents and dest != root:
            broken.append(f"{where} (outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{where} (no heading with anchor #{anchor})")
    return broken


@pytest.mark.parametrize(
    "line, cites",
    [
        (f"Evaluation follows {_WORD} §6.", True),
        (f"scale the map by conf (as {_WORD} section 2 says).", True),
        (f"{_WORD}'s target is met.", True),
        (f"# not listed in {_WORD}.", True),
        ("_LATEX_SPECIAL = {...}", False),
        ("a SPECIFIC case; the specification; spec = 'cuda'", False),
        (f"{_WORD}_VERSION = 2; torch.{_WORD.lower()}", False),
        ("see docs/method.md, frame level", False),
    ],
)
def test_the_citation_pattern(line, cites):
    assert bool(CITATION.search(line)) is cites


@pytest.mark.parametrize(
    "line, cites",
    [
        (f"({_ISSUE} 14, item 3)", True),
        (f"# {_ISSUE.title()} 17 item 4: ...", True),
        (f"{_ISSUE} #22", True),
        ("a known issue with onnxruntime", False),
        ("tissue 3", False),
    ],
)
def test_the_issue_number_pattern(line, cites):
    assert bool(ISSUE_NUMBER.search(line)) is cites


def test_no_tracked_file_cites_the_specification():
    hits = _offending_lines(CITATION, _tracked_text_files())
    assert not hits, "cite docs/ or the README instead:\n" + "\n".join(hits)


def test_no_tracked_file_cites_a_tracker_issue():
    hits = _offending_lines(ISSUE_NUMBER, _tracked_text_files())
    assert not hits, "say what the test checks instead of citing an issue:\n" + "\n".join(hits)


def test_the_docs_exist_and_the_readme_links_them():
    docs = {p.name for p in (ROOT / "docs").glob("*.md")}
    expected = {"index.md", "method.md", "protocols.md", "ops.md", "architecture.md", "reliability.md", "results.md"}
    assert expected <= docs
    readme_targets = {t.partition("#")[0] for _, t in _links((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert {f"docs/{name}" for name in expected - {"index.md"}} <= readme_targets


def test_the_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[ok](#title) [gone](missing.md) [bad anchor](#nope)\n"
        "```\n[in code](also-missing.md)\n```\n[web](https://example.org)\n",
        encoding="utf-8",
    )
    broken = _broken_links(page, root=tmp_path)
    assert [b.split(": ", 1)[1] for b in broken] == [
        "missing.md (no such file)",
        "#nope (no heading with anchor #nope)",
    ]


@pytest.mark.parametrize("md", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md):
    assert md.is_file(), f"{md.relative_to(ROOT)} is missing"
    broken = _broken_links(md)
    assert not broken, "broken links:\n" + "\n".join(broken)
