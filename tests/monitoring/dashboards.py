"""Reading the Grafana dashboards and the metric names their queries use, and the names each service
exports (chatstack from its own registry, vLLM and Ray Serve from the checked-in lists in exported/)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric

from app.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
EXPORTED = Path(__file__).resolve().parent / "exported"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords and variables left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group(0) in _KEYWORDS:
            continue  # a function or aggregation, or an operator word
        names.add(match.group(0))
    return names


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def queries(name: str, dashboard: dict[str, Any]) -> Iterator[Query]:
    """Every PromQL query of a dashboard: its panels' targets and its query variables."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(name, panel["title"], target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            yield Query(name, f"variable {variable['name']}", query)


def query_metric_names(query: Query) -> set[str]:
    found = _LABEL_VALUES.search(query.expr)
    return {found.group(1)} if found else metric_names(query.expr)


def sample_names(family: str, kind: str) -> set[str]:
    """The series names Prometheus scrapes for a metric family of a given type."""
    if kind == "counter":
        return {f"{family}_total"}
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return {family}


def chatstack_families() -> dict[str, str]:
    """chatstack's metric families and types, from the registry the app builds (app/metrics.py)."""
    families: list[Metric] = list(Metrics().registry.collect())
    return {family.name: family.type for family in families}


def exported_families(list_name: str) -> dict[str, str]:
    """A checked-in list of a service's metric families (see the sources named in each file)."""
    families = {}
    for line in (EXPORTED / list_name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind = line.split()
            families[name] = kind
    return families


def ray_vllm_families() -> dict[str, str]:
    """vLLM's metrics as Ray Serve LLM exports them: `vllm:NAME` becomes `ray_vllm_NAME`."""
    return {
        "ray_" + name.replace(":", "_"): kind for name, kind in exported_families("vllm-0.32.0.txt").items()
    }


def known_series() -> dict[str, str]:
    """Every series name chatstack, vLLM and Ray Serve export, mapped to the service exporting it."""
    sources = {
        "chatstack": chatstack_families(),
        "vLLM 0.32": exported_families("vllm-0.32.0.txt"),
        "Ray Serve 2.60": exported_families("ray-serve-2.60.0.txt") | ray_vllm_families(),
    }
    series = {}
    for source, families in sources.items():
        for family, kind in families.items():
            for name in sample_names(family, kind):
                series[name] = source
    return series
