"""What a directory of migration scripts declares, for tests that check a store applied them."""

from __future__ import annotations

import re
from pathlib import Path

STATEMENT = re.compile(r"(CREATE|DROP) (?:TABLE|INDEX) (\w+)")


def migration_versions(directory: Path) -> list[int]:
    """The version numbers of the scripts, in order."""
    return sorted(int(path.name[:4]) for path in directory.glob("*.sql"))


def declared_objects(directory: Path) -> set[str]:
    """Every table and index the scripts, applied in order, leave behind."""
    names: set[str] = set()
    for path in sorted(directory.glob("*.sql")):
        for verb, name in STATEMENT.findall(path.read_text()):
            if verb == "CREATE":
                names.add(name)
            else:
                names.discard(name)
    return names
