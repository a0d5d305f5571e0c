"""The project's documents name only files a clone has: the README once pointed at a
contract outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)")  # a markdown link's target, without its #fragment
PATH = re.compile(r"`((?:\.\./|docs/)[^`\s]+\.md)`")  # a document named in code spans


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_and_named_document_is_in_the_repository() -> None:
    for document in _documents():
        text = document.read_text()
        targets = [t for t in LINK.findall(text) if "://" not in t] + PATH.findall(text)
        base = ROOT if document.name == "README.md" else document.parent
        for target in targets:
            found = (base / target).resolve() if not target.startswith("docs/") else ROOT / target
            assert found.is_relative_to(ROOT) and found.exists(), f"{document.name}: {target}"


def test_code_cites_the_contract_in_the_repository() -> None:
    cited = set()
    for source in [*ROOT.glob("gateway/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        if source == Path(__file__).resolve():
            continue
        text = source.read_text()
        assert "DESIGN §" not in text, source
        cited |= set(re.findall(r"contract §(\d+)", text))
    headings = re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "contract.md").read_text(), re.M)
    assert cited and cited <= set(headings)
