"""Every map layer, in drawing order (bottom first)."""

from __future__ import annotations

from layers import couriers, dispatch_arrows, hexes, outlets, outlines, vehicles, zones
from layers.base import Layer

#: Drawing order: territory fills under the hexes, points and zone outlines on top.
LAYERS: tuple[Layer, ...] = (
    hexes.LAYER,
    outlines.LAYER,
    zones.LAYER,
    outlets.LAYER,
    vehicles.LAYER,
    couriers.LAYER,
    dispatch_arrows.LAYER,
)
BY_KEY = {layer.key: layer for layer in LAYERS}
#: The traces of each layer, in the order its ``traces`` builder returns them.
LAYER_TRACES = {layer.key: layer.trace_names for layer in LAYERS}
#: The map figure's traces, bottom first, from the depths the layers declare.
TRACE_ORDER = tuple(
    name for name, _depth in sorted((t for layer in LAYERS for t in layer.trace_depths), key=lambda t: t[1])
)


def get(key: str) -> Layer:
    """The layer registered under ``key``.

    Examples
    --------
    >>> get("hexes").required
    ('cell', 'value', 'load_ratio', 'node')
    >>> get("weather")
    Traceback (most recent call last):
    ...
    KeyError: "no layer 'weather'; known: ['couriers', 'dispatch_arrows', 'hexes', 'outlets', 'outlines', 'vehicles', 'zones']"
    """
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no layer {key!r}; known: {sorted(BY_KEY)}") from None


def default_keys() -> list[str]:
    """Keys of the layers a new view shows.

    Examples
    --------
    >>> default_keys()
    ['hexes', 'outlines', 'zones', 'outlets']
    """
    return [layer.key for layer in LAYERS if layer.default_on]
