"""Hard links: a publication reuses a file of the live one under a second name, not a copy."""
from __future__ import annotations

import os
from pathlib import Path


def hard_link(source: Path, target: Path) -> bool:
    """`target` as a second name of `source` (same inode, same mode): either name can be removed without the
    other, and a copied folder gets a file of its own. False when it cannot be (`source` missing, another file
    system, no links there): the caller writes the file instead."""
    try:
        os.link(source, target)
    except OSError:
        return False
    return True
