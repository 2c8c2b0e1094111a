"""Who is asking: the viewer of one request, passed explicitly into every read and action.

A :class:`Viewer` is resolved from the server-side session once per request
(``auth.web``) or made for a command-line operator (:func:`operator`). The view model,
exports, the outlook, dispatch decisions and every background job started on a user's
behalf take it as an argument and clamp to it with :meth:`Viewer.require`: a node
outside the viewer's subtree raises :class:`OutsideScope`, which the web layer answers
with ``403`` and an audit line. Nothing a request says about itself decides a scope.

Examples
--------
>>> parents = {"hq": None, "div-south": "hq", "r-440300": "div-south", "b-440305": "r-440300",
...            "b-440306": "r-440300"}
>>> v = Viewer.for_user({"user_id": "nanshan", "role": "manager", "node_id": "b-440305"}, parents)
>>> v.holds("b-440305"), v.holds("b-440306"), v.holds("hq")
(True, False, False)
>>> v.require("hq")
Traceback (most recent call last):
...
auth.viewer.OutsideScope: node 'hq' is outside b-440305
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from auth import scope as sc


class OutsideScope(PermissionError):
    """A read or action named a node (or a private layer) the viewer does not hold."""

    def __init__(self, message: str, node: object = None):
        super().__init__(message)
        self.node = node


@dataclass(frozen=True)
class Viewer:
    """One viewer: user id, role, root node, grants and the nodes they hold.

    Parameters
    ----------
    user_id : str or None
        The signed-in user (``None`` for an open app on loopback, used by tests and
        benchmarks); the label audit lines carry is :attr:`label`.
    role : str
        ``admin``, ``manager`` or ``viewer`` (``operator`` for a command-line user).
    root : str
        The top node the viewer may see.
    can_see_couriers : bool
        The grant to see individual couriers and vehicles above branch level.
    nodes : frozenset of str
        Every node of the root's subtree.
    levels : mapping
        Node -> level, for the position grant.
    label : str
        Who the audit log names: the user id, or ``cli:<os user>``.
    """

    user_id: str | None
    role: str
    root: str
    can_see_couriers: bool
    nodes: frozenset = field(repr=False)
    levels: Mapping = field(repr=False, compare=False)
    label: str = ""

    @classmethod
    def for_user(cls, user: Mapping, parents: Mapping, levels: Mapping | None = None) -> Viewer:
        """The viewer of a user row (``user_id``, ``role``, ``node_id``, grants)."""
        root = sc.user_root(user, parents)
        return cls(
            user_id=user["user_id"],
            role=user["role"],
            root=root,
            can_see_couriers=bool(user.get("can_see_couriers")),
            nodes=frozenset(sc.subtree(root, parents)),
            levels=levels or {},
            label=str(user["user_id"]),
        )

    @classmethod
    def everyone(cls, parents: Mapping, levels: Mapping | None = None, label: str = "open") -> Viewer:
        """A viewer holding the whole tree with every grant (an open app on loopback,
        a command-line operator, the server's own start-up work)."""
        return cls(
            user_id=None,
            role="admin",
            root=sc.tree_root(parents),
            can_see_couriers=True,
            nodes=frozenset(parents),
            levels=levels or {},
            label=label,
        )

    # -- scope ------------------------------------------------------------------------------
    def holds(self, node: object) -> bool:
        """Is ``node`` (any value) a node of this viewer's subtree?"""
        return isinstance(node, str) and node in self.nodes

    def require(self, node: object) -> str:
        """``node`` if the viewer holds it; else :class:`OutsideScope`."""
        if not self.holds(node):
            shown = node if isinstance(node, str) and len(node) <= 64 else type(node).__name__
            raise OutsideScope(f"node {shown!r} is outside {self.root}", node)
        return node

    def require_all(self, nodes: Iterable[object]) -> None:
        for node in nodes:
            self.require(node)

    # -- grants -----------------------------------------------------------------------------
    def may_see_positions(self, node: str) -> bool:
        """Individual courier and vehicle positions at ``node`` (see ``auth.scope``)."""
        if self.can_see_couriers:
            return True
        return isinstance(node, str) and self.levels.get(node) in sc.POSITION_LEVELS

    def shown_layers(self, node: str, layers: Iterable[str]) -> list[str]:
        """``layers`` less the private ones the viewer may not see at ``node``."""
        layers = list(layers)
        if self.may_see_positions(node):
            return layers
        return [k for k in layers if k not in sc.PRIVATE_LAYERS]

    def require_layers(self, node: str, layers: Iterable[str]) -> None:
        """:class:`OutsideScope` if ``layers`` holds a private layer the viewer may not see."""
        hidden = sorted(set(layers) - set(self.shown_layers(node, layers)))
        if hidden:
            level = self.levels.get(node, "unknown") if isinstance(node, str) else "unknown"
            shown = str(node)[:64]
            raise OutsideScope(f"{', '.join(hidden)} at {level} level ({shown}) without the grant", node)

    @property
    def may_act(self) -> bool:
        """Exports and dispatch decisions: managers, admins and operators, not viewers."""
        return self.role in ("manager", "admin", "operator")

    def require_act(self, what: str) -> None:
        if not self.may_act:
            raise OutsideScope(f"{what} by a {self.role}")


def operator(parents: Mapping, levels: Mapping | None = None) -> Viewer:
    """The viewer of a command run on the server's machine: the whole tree, audited as
    ``cli:<os user>``."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        who = "unknown"
    return Viewer(
        user_id=f"cli:{who}",
        role="operator",
        root=sc.tree_root(parents),
        can_see_couriers=True,
        nodes=frozenset(parents),
        levels=levels or {},
        label=f"cli:{who}",
    )


def of_store(store, user: Mapping | None = None, label: str = "open") -> Viewer:
    """The viewer of ``user`` (or everyone) over ``store``'s tree."""
    nodes = store.nodes()
    parents = dict(zip(nodes["node_id"].to_list(), nodes["parent_id"].to_list(), strict=True))
    levels = dict(zip(nodes["node_id"].to_list(), nodes["level"].to_list(), strict=True))
    if user is None:
        return Viewer.everyone(parents, levels, label=label)
    return Viewer.for_user(user, parents, levels)
