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


def get(key: str) -> Layer:
    """The layer registered under ``key``."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no layer {key!r}; known: {sorted(BY_KEY)}") from None


def default_keys() -> list[str]:
    return [layer.key for layer in LAYERS if layer.default_on]
