"""Every callback of the dashboard, enumerated from the app, replayed from the browser's
real request as the branch user ``nanshan`` with every node reference moved outside
b-440305, in every shape a request can take: no answer carries the other node's data."""

# ruff: noqa: F811
from __future__ import annotations

from tests.security.scope_support import (
    OUTSIDE,
    OWN,
    USER,
    audit_count,
    callback_outputs,
    decoded,
    header_problems,
    names_node,
    post,
    retarget,
    shapes,
    wait_for_audit,
)

#: Recorded requests replayed per callback (distinct triggers first).
PER_CALLBACK = 8


def _trigger(body: dict, nodes) -> str:
    return str(retarget(body.get("changedPropIds"), nodes, "*"))


def _pick(bodies: list[dict], nodes) -> list[dict]:
    """Up to PER_CALLBACK bodies, one per distinct trigger first."""
    seen, first, rest = set(), [], []
    for b in bodies:
        t = _trigger(b, nodes)
        (rest if t in seen else first).append(b)
        seen.add(t)
    return (first + rest)[:PER_CALLBACK]


def _answer(resp):
    data, _ = decoded(resp)
    return data if resp.status_code == 200 else None


def test_every_callback_has_a_recorded_real_request(enumerated, recorded):
    """A callback added later fails here until the recording uses it."""
    missing = [o for o in callback_outputs(enumerated) if o not in recorded["bodies"]]
    assert not missing, f"no real request recorded for {missing}; recording steps: {recorded['steps']}"


def test_the_enumerated_callbacks_are_the_served_ones(enumerated, auth_url, clients):
    served = clients["admin"].get(f"{auth_url}/_dash-dependencies").json()
    assert {d["output"] for d in served} == set(enumerated.callback_map)


def test_replayed_callbacks_never_answer_with_outside_data(
    enumerated, recorded, clients, auth_url, auth_store, secrets
):
    """For each callback and each outside node and shape: a 4xx with the security
    headers (403 and an audit line when sent as recorded), or an answer that holds
    nothing of that node (no other branch's couriers, no figures or names of that node,
    not that node as the view's node). Never 5xx."""
    nodes = secrets.nodes
    user, admin = clients[USER], clients["admin"]
    problems: list[str] = []
    replayed = 0
    for output in callback_outputs(enumerated):
        bodies = _pick(recorded["bodies"].get(output, []), nodes)
        if not bodies:
            problems.append(f"{output}: no recorded request")
            continue
        first = bodies[0]
        own = [_answer(post(c, auth_url, retarget(first, nodes, OWN))) for c in (admin, user)]
        for target in OUTSIDE:
            secrets.learn(output, target, _answer(post(admin, auth_url, retarget(first, nodes, target))), own)
        for i, body in enumerate(bodies):
            named = names_node({k: body.get(k) for k in ("inputs", "state")}, nodes)
            for j, target in enumerate(OUTSIDE):
                for k, (shape, b) in enumerate(shapes(body, nodes, target)):
                    # The first request as sent goes to every outside node; every other
                    # (request, shape) to one of them, taken in turn.
                    if not (i == 0 and shape == "as sent") and (i + k) % len(OUTSIDE) != j:
                        continue
                    replayed += 1
                    before = audit_count(auth_store, "refusal")
                    r = post(user, auth_url, b)
                    where = f"{output} [{shape}, {target}, trigger {body.get('changedPropIds')}]"
                    data, text = decoded(r)
                    if r.status_code >= 500:
                        problems.append(f"{where}: {r.status_code}")
                        continue
                    if 400 <= r.status_code < 500:
                        problems += [f"{where}: {h}" for h in header_problems(r)]
                        if shape == "as sent" and named:
                            if r.status_code != 403:
                                problems.append(f"{where}: {r.status_code}, not 403")
                            elif wait_for_audit(auth_store, "refusal", before) <= before:
                                problems.append(f"{where}: 403 without an audit line")
                        continue
                    if shape == "as sent" and named:
                        problems.append(f"{where}: answered {r.status_code}, not 403")
                    if r.status_code not in (200, 204):
                        problems.append(f"{where}: unexpected {r.status_code}")
                    problems += [f"{where}: {w}" for w in secrets.leaks(output, target, data, text)]
    print(f"{replayed} replayed requests, {len(problems)} problems")
    assert not problems, f"{len(problems)} problems in {replayed} replays:\n" + "\n".join(problems[:60])
