"""Relative links in the deployment docs lead somewhere: the file exists, and so does the heading.

Covers the pages of the packaging work (README, configuration, operations, security,
images, the chart's README); a renamed heading or moved file breaks a link silently
otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/configuration.md", "docs/operations.md", "docs/security.md",
         "docs/images.md", "charts/visitor-sync/README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        found.add(text.replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page) -> None:
    source = ROOT / page
    broken = []
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", source.read_text(), flags=re.S))
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        missing_anchor = bool(anchor) and resolved.suffix == ".md" and resolved.exists() \
            and anchor not in anchors(resolved)
        if not resolved.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page}: broken links {broken}"


def test_anchor_rule_matches_github() -> None:
    page = ROOT / "docs" / "operations.md"
    assert "rotating-a-districts-password" in anchors(page)
    assert "the-image-imagessftp" in anchors(ROOT / "docs" / "sftp.md")
