"""A node's branches: the one way every read keeps to a scope.

Operations rows carry the branch they belong to; a node's subtree is the set of branches
below it, kept in ``node_branches`` (the closure of the organisation tree, one row per
ancestor and branch). Every scoped read restricts its rows through these helpers, so the
rule is written once.

Examples
--------
>>> branches_of()
'(SELECT branch_id FROM node_branches WHERE ancestor_id = $scope)'
>>> in_scope("?")
'SEMI JOIN (SELECT branch_id FROM node_branches WHERE ancestor_id = ?) s USING (branch_id)'
"""

from __future__ import annotations

import polars as pl


def branches_of(node: str = "$scope") -> str:
    """SQL subquery: the branch ids below ``node`` (a parameter, ``$scope`` or ``?``)."""
    return f"(SELECT branch_id FROM node_branches WHERE ancestor_id = {node})"


def in_scope(node: str = "$scope") -> str:
    """SQL join clause keeping the rows (with a ``branch_id`` column) below ``node``."""
    return f"SEMI JOIN {branches_of(node)} s USING (branch_id)"


def branch_ids(store, scope: str) -> pl.Series:
    """The branch ids below ``scope`` (checked: ``ScopeError`` for an unknown node)."""
    store.check_scope(scope)
    return (
        store.cursor()
        .sql(f"SELECT branch_id FROM {branches_of()} b", params={"scope": scope})
        .pl()["branch_id"]
    )
