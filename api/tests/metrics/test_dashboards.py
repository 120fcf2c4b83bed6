"""docs/grafana's dashboard and docs/prometheus's alerting rules: well formed, and every metric
they query is one README.md documents and a live /metrics answer carries."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.devstack import LocalStack
from tests.conftest import PROBE, query
from tests.processes import REPO_DIR, wait_until

DASHBOARD = REPO_DIR / "docs" / "grafana" / "jobplatform-dashboard.json"
ALERTS = REPO_DIR / "docs" / "prometheus" / "jobplatform-alerts.yml"

METRIC_NAME = re.compile(r"\bjobplatform_[a-z0-9_]+")
# The series PromQL selects for a family of each type (prometheus-client's text format;
# multiprocess mode writes no `_created` series).
SERIES_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
DURATION = re.compile(r"^([0-9]+[smhdwy])+$")
SEVERITIES = {"info", "warning", "critical"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included, rows themselves left out."""
    found = []
    for panel in board["panels"]:
        found.extend(panel.get("panels", []))
        found.append(panel)
    return [panel for panel in found if panel["type"] != "row"]


def dashboard_expressions(board: dict[str, Any]) -> list[str]:
    expressions = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            variable_query = variable["query"]
            expressions.append(variable_query["query"] if isinstance(variable_query, dict) else variable_query)
    return expressions


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}


def documented_metrics() -> dict[str, str]:
    """README.md's table of metrics: name -> type."""
    rows = re.findall(r"^\| `(jobplatform_[a-z0-9_]+)` \| (\w+) \|", (REPO_DIR / "README.md").read_text(), re.M)
    return dict(rows)


def undocumented(names: set[str]) -> set[str]:
    documented = documented_metrics()
    return {
        name
        for name in names
        if name not in documented and documented.get(HISTOGRAM_SERIES.sub("", name)) != "histogram"
    }


def queryable_names(exposition: str) -> set[str]:
    """The series names PromQL can select in this scrape, families with no sample yet included
    (a canary that has not come back, a lag not known yet)."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ()))
    return names


def test_every_alerting_rule_is_complete() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    groups = document["groups"]
    assert groups
    assert len({group["name"] for group in groups}) == len(groups)
    rules = alert_rules()
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
        assert rule["expr"].strip(), rule["alert"]
        assert DURATION.match(str(rule["for"])), f"{rule['alert']}: for {rule['for']!r}"
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
    assert not [name for name, count in Counter(rule["alert"] for rule in rules).items() if count > 1]


def test_every_dashboard_panel_queries_prometheus() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    every_panel = [*panels(board), *(panel for panel in board["panels"] if panel["type"] == "row")]
    ids = [panel["id"] for panel in every_panel]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_the_dashboard_and_the_rules_query_only_documented_metrics() -> None:
    used = metric_names(dashboard_expressions(dashboard())) | metric_names([rule["expr"] for rule in alert_rules()])
    assert len(used) > 20
    assert not undocumented(used)
    # The check can fail: a misspelt name, or a suffix the family's type does not have.
    assert undocumented({"jobplatform_http_requests_totl", "jobplatform_queue_depth_bucket"}) == {
        "jobplatform_http_requests_totl",
        "jobplatform_queue_depth_bucket",
    }


@pytest.mark.usefixtures("relay_process", "celery_process", "rq_process")
async def test_every_metric_the_dashboard_and_the_rules_query_is_in_a_live_scrape(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    # Traffic, a read on a replica and a finished task of each backend, so every family is there.
    for backend in ("celery", "rq"):
        answer = await probe_client.post("/probe/tasks", json={"backend": backend, "key": f"dashboards-{backend}"})
        assert answer.status_code == 201, answer.text
    stack.wait_for_replicas()
    assert (await probe_client.get("/api/jobs")).status_code == 200
    await wait_until(
        lambda: query(stack, "SELECT count(*) FROM task_records WHERE status = 'succeeded'") == "2",
        seconds=60,
        what="both test tasks to succeed",
    )
    scrape = await probe_client.get("/metrics", headers=PROBE)
    assert scrape.status_code == 200, scrape.text
    available = queryable_names(scrape.text)

    board_names = metric_names(dashboard_expressions(dashboard()))
    rule_names = metric_names([rule["expr"] for rule in alert_rules()])
    assert sorted(board_names - available) == [], "the dashboard queries metrics /metrics does not have"
    assert sorted(rule_names - available) == [], "the alerting rules query metrics /metrics does not have"
    # A misspelt name, or a series of the wrong type, is not found.
    assert not {"jobplatform_http_requests_totl", "jobplatform_queue_depth_total"} & available
