"""The README and the pages under docs/ link to files and headings that exist.

Relative links (``[text](path)``, ``[text](path#anchor)``, ``[text](#anchor)``) must name an
existing file, and an anchor into a Markdown file must match one of its headings as GitHub
names them. Links inside code blocks and inline code are text, not links; URLs with a scheme
are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(text: str, *, keep_code: bool = False) -> list[tuple[int, str]]:
    """``(line number, line)`` outside fenced code blocks, inline code removed unless kept."""
    out, fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            out.append((number, line if keep_code else INLINE_CODE.sub("", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets ``-1``, ``-2``…)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose(path.read_text(), keep_code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``page``, as ``page:line: target: why``."""
    problems = []
    for number, line in _prose(page.read_text()):
        for target in LINK.findall(line):
            if SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading with that anchor")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_the_readme_links_every_docs_page():
    readme = ROOT / "README.md"
    linked = {
        (readme.parent / t.partition("#")[0]).resolve()
        for _, line in _prose(readme.read_text())
        for t in LINK.findall(line)
        if not SCHEME.match(t)
    }
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## Speed and memory\n")
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#speed-and-memory) [ok](#page) [web](https://example.com/x.md)\n"
        "`[code](missing.md)`\n\n```\n[fenced](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#speed) [here](#nowhere)\n"
    )
    assert broken_links(page, tmp_path) == [
        "page.md:9: missing.md: no such file",
        "page.md:9: other.md#speed: no heading with that anchor",
        "page.md:9: #nowhere: no heading with that anchor",
    ]
