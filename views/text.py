"""Strings of the reports: the dashboard's translations plus a few of the reports' own."""

from __future__ import annotations

import json
from functools import cache

from config import PROJECT_ROOT

_OWN = {
    "zh": {
        "report": "运营热力图报告",
        "period": "时段",
        "generated": "生成时间",
        "metric": "指标",
        "resolution": "H3 分辨率",
        "indicator": "指标",
        "value": "数值",
        "before": "对比期",
        "change": "变化",
        "top_zones": "高负荷区域",
        "ranking": "下级排名",
        "rank": "名次",
        "hour_col": "小时",
        "branch": "分部",
        "cells": "格",
        "workload": "工作量",
        "peak_ratio": "峰值负荷",
        "excess": "超出件数",
        "rule": "规则",
        "no_zones": "该时段无高负荷区域",
        "no_children": "无下级单位",
        "tiles": "OpenStreetMap 底图（需联网）",
        "legend_null": "无数据",
        "map": "热力图",
        "compare_hour": "对比：前一天同一小时",
        "compare_days": "对比：前一时段（同样天数）",
        "zone_hours": "高负荷区域（区域·小时）",
        "courier_hours_note": "多小时时段：快递员为时段内去重人数，人均每小时件数按快递员小时计算，格负荷率取各小时峰值。",
        "path": "层级",
        "hexes": "格数",
        "export": "导出报告",
        "export_button": "导出",
        "export_failed": "导出失败",
        "export_hour": "当前小时",
        "export_day": "全天",
    },
    "en": {
        "report": "Operations heatmap report",
        "period": "Period",
        "generated": "Generated",
        "metric": "Metric",
        "resolution": "H3 resolution",
        "indicator": "Indicator",
        "value": "Value",
        "before": "Compared",
        "change": "Change",
        "top_zones": "Peak-load zones",
        "ranking": "Ranking of child units",
        "rank": "Rank",
        "hour_col": "Hour",
        "branch": "Branch",
        "cells": "Cells",
        "workload": "Workload",
        "peak_ratio": "Peak ratio",
        "excess": "Excess parcels",
        "rule": "Rule",
        "no_zones": "No peak-load zone in the period",
        "no_children": "No child units",
        "tiles": "OpenStreetMap tiles (needs network)",
        "legend_null": "no data",
        "map": "Heatmap",
        "compare_hour": "Compared with the same hour of the day before",
        "compare_days": "Compared with the previous period of the same length",
        "zone_hours": "Peak-load zones (zone-hours)",
        "courier_hours_note": "Periods of several hours: couriers are distinct over the period, parcels per courier-hour "
        "divide by courier-hours, and a cell's load ratio is its peak hourly ratio.",
        "path": "Path",
        "hexes": "Cells",
        "export": "Export report",
        "export_button": "Export",
        "export_failed": "Export failed",
        "export_hour": "this hour",
        "export_day": "whole day",
    },
}


@cache
def _shared() -> dict:
    with open(PROJECT_ROOT / "assets" / "translations.json", encoding="utf-8") as fh:
        return json.load(fh)


def strings(lang: str = "zh") -> dict:
    """Every string of a language (``zh`` or ``en``): the dashboard's, then the reports'.

    Examples
    --------
    >>> strings("en")["zone"], strings("zh")["zone"]
    ('Zone', '区域')
    >>> strings("fr")
    Traceback (most recent call last):
    ...
    ValueError: unknown language 'fr'; known: zh, en
    """
    if lang not in _OWN:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(_OWN)}")
    return {**_shared().get(lang, {}), **_OWN[lang]}


def fmt(key: str, v) -> str:
    """A KPI value as the dashboard prints it.

    Examples
    --------
    >>> fmt("on_time_rate", 0.9234), fmt("pickups", 12345), fmt("parcels_per_courier_hour", 7.5), fmt("zones", None)
    ('92.3%', '12,345', '7.5', '–')
    """
    if v is None:
        return "–"
    if key == "on_time_rate":
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.1f}"
    return f"{v:,}"


def fmt_change(ch) -> str:
    """A relative change as the KPI panel prints it.

    Examples
    --------
    >>> fmt_change(0.123), fmt_change(-0.05), fmt_change(None)
    ('+12%', '-5%', '–')
    """
    return "–" if ch is None else f"{'+' if ch >= 0 else ''}{100 * ch:.0f}%"
