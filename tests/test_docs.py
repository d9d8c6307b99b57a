"""The documentation holds together: a short README, links that resolve, every ablation folder indexed and explained.

- ``README.md`` is a user's guide of at most :data:`README_MAX_LINES` lines that keeps the two newcomer commands.
- Every relative link in ``README.md`` and ``docs/**/*.md`` (outside code) names an existing file, and a
  ``#fragment`` into a Markdown file names one of its headings (GitHub's anchor rule, :func:`slug`).
- Every folder under ``docs/ablation`` has a ``README.md`` that names the ``tools/ablation.py`` command behind its
  tables, and ``docs/evidence/README.md`` links to each of them (the index).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ABLATION = DOCS / "ablation"
INDEX = DOCS / "evidence" / "README.md"
README_MAX_LINES = 300

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files() -> list[Path]:
    return [README] + sorted(DOCS.rglob("*.md"))


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks, inline code spans removed."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, re.sub(r"`[^`]*`", "", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, code ticks and punctuation dropped (letters, digits, ``_``, ``-``
    and spaces kept), each space a hyphen."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of the headings of a Markdown file (a repeated heading gets ``-1``, ``-2``, … as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for n, line in _prose_lines(path):
        for target in _LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: are not checked
                links.append((n, target))
    return links


def test_slug_follows_githubs_rule():
    assert slug("What `make demo` does and printed") == "what-make-demo-does-and-printed"
    assert slug("MMDetection 3.x") == "mmdetection-3x"
    assert slug("First real-data U-Net runs (2026-11-24, one seed each)") == \
        "first-real-data-u-net-runs-2026-11-24-one-seed-each"
    assert slug("v2 final table: YOLOv8n-P2 on SIRST v1 trainval → test") == \
        "v2-final-table-yolov8n-p2-on-sirst-v1-trainval--test"


def test_readme_is_a_short_guide_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}); move detail into docs/ and link to it")
    for command in ("make demo", "make test"):
        assert any(line.startswith(command + " ") for line in lines), f"README.md lost the command `{command}`"
    assert "## Results" in lines, "README.md lost its results table (## Results)"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    bad = []
    for n, target in relative_links(path):
        file, _, fragment = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{path.relative_to(ROOT)}:{n}: {target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(f"{path.relative_to(ROOT)}:{n}: {target} (no heading '#{fragment}' in {dest.name})")
    assert not bad, "broken links; point them at the file that now holds the text:\n" + "\n".join(bad)


def ablation_folders() -> list[Path]:
    return sorted(p for p in ABLATION.iterdir() if p.is_dir())


def test_there_are_ablation_folders():
    assert len(ablation_folders()) >= 1, f"{ABLATION} holds no ablation folder"


@pytest.mark.parametrize("folder", ablation_folders(), ids=lambda p: p.name)
def test_ablation_folder_has_a_readme_with_its_command(folder):
    readme = folder / "README.md"
    assert readme.is_file(), (f"{folder.relative_to(ROOT)} has no README.md; write one with the commands that "
                              "produced its tables and their reading")
    assert "tools/ablation.py" in readme.read_text(encoding="utf-8"), (
        f"{readme.relative_to(ROOT)} names no `python tools/ablation.py ...` command; give the command behind the tables")


@pytest.mark.parametrize("folder", ablation_folders(), ids=lambda p: p.name)
def test_evidence_index_links_every_ablation_folder(folder):
    targets = {(INDEX.parent / t.partition("#")[0]).resolve() for _, t in relative_links(INDEX)}
    assert (folder / "README.md").resolve() in targets or folder.resolve() in targets, (
        f"{INDEX.relative_to(ROOT)} does not index {folder.relative_to(ROOT)}; add a line linking "
        f"../ablation/{folder.name}/README.md")
