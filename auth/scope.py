"""Which nodes a user may see. Pure functions over the tree's parent links.

Examples
--------
>>> parents = {"hq": None, "div-south": "hq", "r-440300": "div-south", "b-440305": "r-440300"}
>>> within("b-440305", "div-south", parents)
True
>>> within("div-south", "r-440300", parents)
False
"""

from __future__ import annotations

from collections.abc import Mapping

#: Map layers that show individual couriers or vehicles (personal data).
PRIVATE_LAYERS = frozenset({"couriers", "vehicles"})
#: Levels at which individual positions are shown to every role.
POSITION_LEVELS = frozenset({"branch"})


def within(node_id: str | None, root: str, parents: Mapping[str, str | None]) -> bool:
    """Is ``node_id`` the node ``root`` or below it? Unknown nodes are not."""
    if not isinstance(node_id, str) or node_id not in parents:
        return False
    seen = 0
    while node_id is not None and seen <= len(parents):
        if node_id == root:
            return True
        node_id = parents.get(node_id)
        seen += 1
    return False


def subtree(root: str, parents: Mapping[str, str | None]) -> set[str]:
    """Every node of ``root``'s subtree, itself included."""
    return {n for n in parents if within(n, root, parents)}


def tree_root(parents: Mapping[str, str | None]) -> str:
    """The node without a parent (headquarters)."""
    roots = [n for n, p in parents.items() if not p]
    if len(roots) != 1:
        raise ValueError(f"the tree has {len(roots)} roots")
    return roots[0]


def user_root(user: Mapping, parents: Mapping[str, str | None]) -> str:
    """The top node a user may see: the whole tree for an admin, else the role's node."""
    return tree_root(parents) if user["role"] == "admin" else user["node_id"]


def may_see_positions(user: Mapping | None, level: str) -> bool:
    """Individual courier and vehicle positions at a node of ``level``: at branch level for
    every role, above it only with the user's ``can_see_couriers`` grant."""
    return user is None or level in POSITION_LEVELS or bool(user.get("can_see_couriers"))


def may_act(user: Mapping | None) -> bool:
    """Exports and dispatch decisions: managers and admins, not viewers."""
    return user is None or user["role"] in ("manager", "admin")
