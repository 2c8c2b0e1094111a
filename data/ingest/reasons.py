"""Reason codes: the fixed list a rejection message is counted under in the metrics.

Rejection messages are free text made for people and name the record's values (``unknown
device 'dev-042'``); as metric labels they would make a time series per device. Each
message maps to one code of :data:`observe.metrics.REASONS` by the words validation,
canonical reading, the store and the scope checks write it with; a message none of them
matches counts as ``other``.

Examples
--------
>>> code_of("unknown device 'dev-042'")
'unknown_device'
>>> code_of("implausible time: ts before 2000-01-01")
'implausible_time'
>>> code_of("something nobody wrote yet")
'other'
>>> sorted(count([(0, "lat out of range [-90, 90]"), (3, "unknown device 'x'"), (4, "unknown device 'y'")]).items())
[('out_of_range', 1), ('unknown_device', 2)]
"""

from __future__ import annotations

from collections import Counter

from observe.metrics import OTHER

#: ``(code, words)``: the first entry whose words start or appear in a message gives its
#: code. Order matters where messages share words ("implausible time" before the
#: "(implausible)" of a speed).
_PREFIXES = (
    ("not_object", "record is not a JSON object"),
    ("unknown_device", "unknown device"),
    ("outside_network", "position outside every branch territory"),
    ("no_fix", "position 0,0"),
    ("implausible_time", "implausible time"),
    ("conflicting", "conflicting values"),
    ("missing_field", "missing column"),
    ("outside_scope", "the token of "),
    ("not_stored", "could not be stored"),
)
_CONTAINS = (
    ("malformed", "must be one value"),
    ("malformed", "is longer than"),
    ("unreadable", "could not be read as"),
    ("missing_field", " is required"),
    ("out_of_range", "out of range"),
    ("implausible_value", "is negative"),
    ("implausible_value", "is not a finite number"),
    ("implausible_value", "(implausible)"),
    ("invalid_value", "must be one of"),
    ("outside_scope", "what the token may write"),
)


def code_of(reason: str) -> str:
    """The reason code of one rejection message (``"other"`` when none fits)."""
    for code, words in _PREFIXES:
        if reason.startswith(words):
            return code
    for code, words in _CONTAINS:
        if words in reason:
            return code
    return OTHER


def count(rejected) -> Counter:
    """Rejected records per reason code, from ``(index, message)`` pairs.

    Messages are counted first and each distinct one is classified once: a batch of a
    thousand records refused for one reason costs one classification.
    """
    out: Counter = Counter()
    for reason, n in Counter(why for _, why in rejected).items():
        out[code_of(reason)] += n
    return out
