"""Tiering: which cube partitions a lake holds, and moving fine cubes between lakes.

Every lake holds the coarse tier (res 6) of every branch it covers: headquarters and
division views read only that. Fine cubes (res 9) stay where regions and branches are
served; when headquarters needs a branch in detail, the branch's fine partitions are
copied into the headquarters lake. A copy replaces the branch's partitions of the same
days whole (written beside them, then renamed in), so repeating it changes nothing.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from lake import layout

FINE = ("fine_hourly", "fine_presence")


def branch_partitions(lake: Path | str, branch_id: str, days: list[str] | None = None) -> list[Path]:
    """The fine cube partition folders of ``branch_id`` in ``lake``."""
    found = []
    for name in FINE:
        root = Path(layout.DATASETS[name].root(lake))
        for part in sorted(root.glob(f"date=*/division_id=*/branch_id={branch_id}")):
            if days is None or part.parent.parent.name.split("=", 1)[1] in days:
                found.append(part)
    return found


def copy_branch(source: Path | str, target: Path | str, branch_id: str, days: list[str] | None = None) -> int:
    """Copy ``branch_id``'s fine cubes from ``source`` to ``target``; returns the number
    of partitions copied. Idempotent: each target partition is replaced whole."""
    source, target = Path(source), Path(target)
    parts = branch_partitions(source, branch_id, days)
    if not parts:
        raise LookupError(
            f"{source} holds no fine cube of branch {branch_id!r}"
            + (f" on {', '.join(days)}" if days else "")
        )
    for part in parts:
        dest = target / part.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fresh = dest.parent / f".new-{dest.name}-{uuid.uuid4().hex[:8]}"
        old = dest.parent / f".old-{dest.name}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(part, fresh)
        if dest.exists():
            dest.rename(old)
        fresh.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    return len(parts)
