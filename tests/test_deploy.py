"""deploy/: the Kubernetes manifests, the Grafana dashboard and the Prometheus alert rules.

No cluster and no Prometheus run here. The manifests are validated against the Kubernetes schemas
(kubernetes-validate, offline, strict) and read against the CLI's own parser and config loader;
every metric the dashboard and the alerts query must exist in a real scrape of a running stack.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import orjson
import pytest
import yaml

from cli.main import _with_overrides, build_parser
from cli.runner import _GATEWAY_MARGIN_S
from switchyard.config import Config, load_config
from switchyard.open_streams import STREAM_END_S
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import Stack, base_config, free_port, start_stack

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OPERATOR_COMPONENT = KUBE / "prometheus-operator"
SECRET_TEMPLATE = KUBE / "secret.example.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "switchyard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

# The oldest Kubernetes the manifests claim (native gRPC probes are GA from 1.27) and a recent one;
# kubernetes-validate ships both schema sets.
K8S_VERSIONS = ("1.27", "1.35")
# Kinds outside the core schemas, checked structurally below instead.
CRD_KINDS = {"ServiceMonitor"}

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


# ---------------------------------------------------------------- reading the manifests


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifest_files() -> list[Path]:
    """Every manifest: the kustomization's resources, the Secret template and the component's."""
    return sorted(
        path
        for path in [*KUBE.glob("*.yaml"), *OPERATOR_COMPONENT.glob("*.yaml")]
        if path.name != "kustomization.yaml"
    )


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in _manifest_files():
        for doc in _docs(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} is declared twice"
            objects[key] = doc
    return objects


def _get(kind: str, name: str) -> dict[str, Any]:
    return _objects()[(kind, name)]


def _container(name: str) -> dict[str, Any]:
    (container,) = _get("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def _probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["port"]
    return _port(container, port) if isinstance(port, str) else int(port)


def _prestop_sleep_s(container: dict[str, Any]) -> float:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return float(command[1])


def _secret_template() -> dict[str, str]:
    (secret,) = _docs(SECRET_TEMPLATE)
    return {key: str(value) for key, value in secret["stringData"].items()}


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment, secrets taken from the Secret template's placeholders."""
    template = _secret_template()
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            if ref["key"] in template:
                env[var["name"]] = template[ref["key"]]
    return env


def _config_text() -> str:
    return str(_get("ConfigMap", "switchyard-config")["data"]["config.yaml"])


def _mounted_config(deployment: str) -> str:
    """Where the ConfigMap's config.yaml appears in the deployment's container."""
    spec = _get("Deployment", deployment)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (container,) = spec["containers"]
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if volume.get("configMap", {}).get("name") == "switchyard-config":
            assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
            return f"{mount['mountPath']}/config.yaml"
    raise AssertionError(f"{deployment} does not mount the config")


def _load(text: str, env: dict[str, str], tmp_path: Path) -> Config:
    """The config as `switchyard --config FILE` loads it, through the real loader."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, env=env)


def _run_as(deployment: str, tmp_path: Path) -> tuple[argparse.Namespace, Config]:
    """The container's command line as the CLI parses it, and the config it then runs with."""
    container = _container(deployment)
    command = container["command"]
    assert command[0] == "switchyard", "the image's `switchyard` entry point"
    args = build_parser().parse_args(command[1:])
    assert args.config == _mounted_config(deployment)
    config = _load(_config_text(), _container_env(container), tmp_path)
    return args, _with_overrides(config, args)


# ---------------------------------------------------------------- the manifests


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = set()
    for path in _manifest_files():
        for doc in _docs(path):
            if doc["kind"] in CRD_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{path.name} {doc['kind']}: {exc.message} at {list(exc.path)}"
                ) from None
            checked.add(doc["kind"])
    assert checked >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_the_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    resources = set(kustomization["resources"])
    on_disk = {path.name for path in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    # The template's placeholders would overwrite the real Secret on every `kubectl apply -k`.
    assert resources == on_disk - {SECRET_TEMPLATE.name}
    component = yaml.safe_load((OPERATOR_COMPONENT / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    assert {path.name for path in OPERATOR_COMPONENT.glob("*.yaml")} == {
        "kustomization.yaml",
        *component["resources"],
    }
    images = {image["name"] for image in kustomization["images"]}
    for name in ("switchyard-service", "switchyard-gateway"):
        assert _container(name)["image"].partition(":")[0] in images


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed"
)
def test_kustomize_renders_valid_manifests_with_and_without_the_operator_component(tmp_path: Path) -> None:
    # With the component enabled as kustomization.yaml says: in a copy, its `components:` uncommented.
    with_component = shutil.copytree(KUBE, tmp_path / "kubernetes")
    kustomization = yaml.safe_load((with_component / "kustomization.yaml").read_text())
    kustomization["components"] = [OPERATOR_COMPONENT.name]
    (with_component / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for target, with_operator in ((KUBE, False), (with_component, True)):
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(target)], capture_output=True, text=True, timeout=60, check=False
        )
        assert rendered.returncode == 0, rendered.stderr
        docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
        kinds = sorted(doc["kind"] for doc in docs)
        assert ("ServiceMonitor" in kinds) is with_operator
        assert "Secret" not in kinds
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "switchyard", doc["metadata"]["name"]
            if doc["kind"] not in CRD_KINDS:
                kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_the_service_runs_switchyard_service_on_the_configs_grpc_port(tmp_path: Path) -> None:
    args, config = _run_as("switchyard-service", tmp_path)
    assert args.command == "service"
    container = _container("switchyard-service")
    grpc_port = _port(container, "grpc")
    assert grpc_port == config.server.grpc_port
    assert config.server.grpc_host == "0.0.0.0", "a pod's port is reached from outside its loopback"
    # gRPC health (the native `grpc:` probe) on the port the service listens on.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, kind
        assert _probe_port(container, probe["grpc"]) == grpc_port, kind
        assert probe["grpc"].get("service", "") == "", "the server's overall health"
    # The Service forwards the same port, by name.
    service = _get("Service", "switchyard-service")
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert _port(container, port["targetPort"]) == grpc_port


def test_the_gateway_runs_switchyard_gateway_against_the_service(tmp_path: Path) -> None:
    args, config = _run_as("switchyard-gateway", tmp_path)
    assert args.command == "gateway"
    container = _container("switchyard-gateway")
    http_port = _port(container, "http")
    assert http_port == config.server.http_port
    assert config.server.http_host == "0.0.0.0", "a pod's port is reached from outside its loopback"
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (readiness["path"], _probe_port(container, readiness)) == ("/ready", http_port)
    assert (liveness["path"], _probe_port(container, liveness)) == ("/health", http_port)
    # --service names the service's Service, on the port that reaches its gRPC port.
    host, _, port = config.server.grpc_target.rpartition(":")
    service = _get("Service", "switchyard-service")
    assert host == service["metadata"]["name"]
    (grpc,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert (
        _port(_container("switchyard-service"), grpc["targetPort"])
        == _run_as("switchyard-service", tmp_path)[1].server.grpc_port
    )
    gateway_service = _get("Service", "switchyard-gateway")
    (http,) = gateway_service["spec"]["ports"]
    assert _port(container, http["targetPort"]) == http_port


def test_the_service_serves_metrics_on_telemetry_metrics_port(tmp_path: Path) -> None:
    _, config = _run_as("switchyard-service", tmp_path)
    container = _container("switchyard-service")
    assert _port(container, "metrics") == config.telemetry.metrics_port
    assert config.telemetry.metrics_host == "0.0.0.0", "Prometheus scrapes from outside the pod"
    assert config.telemetry.metrics.enabled is True
    annotations = _get("Deployment", "switchyard-service")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.telemetry.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"
    # The dashboard's environment filter reads this static label.
    assert "environment" in config.telemetry.metrics.labels


def test_the_gateway_is_scraped_on_its_rest_port(tmp_path: Path) -> None:
    _, config = _run_as("switchyard-gateway", tmp_path)
    annotations = _get("Deployment", "switchyard-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.server.http_port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_config_logs_json(tmp_path: Path) -> None:
    for deployment in ("switchyard-service", "switchyard-gateway"):
        assert _run_as(deployment, tmp_path)[1].logging.format == "json", deployment


def test_state_is_in_postgresql_and_redis(tmp_path: Path) -> None:
    _, config = _run_as("switchyard-service", tmp_path)
    assert config.store.url.startswith(("postgresql://", "postgres://"))
    assert config.store.redis_url.startswith(("redis://", "rediss://"))
    assert config.auth.required is True
    # The URLs, passwords included, come from the Secret, not the ConfigMap.
    raw = yaml.safe_load(_config_text())
    for key in ("url", "redis_url"):
        assert _ENV_REF.fullmatch(raw["store"][key]), f"store.{key} is not an environment reference"


def test_the_service_gets_every_variable_its_config_reads_and_the_gateway_none_of_the_secrets(
    tmp_path: Path,
) -> None:
    refs = {match.group(1): match.group(2) is not None for match in _ENV_REF.finditer(_config_text())}
    service_env = _container("switchyard-service")["env"]
    from_secret = {var["name"]: var["valueFrom"]["secretKeyRef"] for var in service_env if "valueFrom" in var}
    assert set(refs) <= set(from_secret), f"not passed to the service: {set(refs) - set(from_secret)}"
    (secret,) = _docs(SECRET_TEMPLATE)
    for ref in from_secret.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"], f"{ref['key']} is missing from the Secret template"
    # The gateway holds no secret; every reference has a default, so its copy of the file loads.
    gateway_env = _container("switchyard-gateway").get("env", [])
    assert not [var for var in gateway_env if "valueFrom" in var]
    assert all(refs.values()), "a ${VAR} without a default stops the gateway, which does not get it"
    _run_as("switchyard-gateway", tmp_path)
    # An unedited template opens no admin access with a known token.
    assert _secret_template()["SWITCHYARD_ADMIN_TOKEN"] == ""


@pytest.mark.parametrize("deployment", ["switchyard-service", "switchyard-gateway"])
def test_termination_grace_covers_the_prestop_sleep_and_the_graceful_stop(
    deployment: str, tmp_path: Path
) -> None:
    _, config = _run_as(deployment, tmp_path)
    container = _container(deployment)
    sleep_s = _prestop_sleep_s(container)
    assert sleep_s >= 2, "too short for the endpoint removal to reach the load balancers"
    # What the process takes after SIGTERM at most, before it would be killed (cli/runner.py).
    stop_s = config.server.shutdown_grace_s + STREAM_END_S
    if deployment == "switchyard-gateway":
        stop_s += _GATEWAY_MARGIN_S
    grace = _get("Deployment", deployment)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > sleep_s + stop_s + 5, f"{grace} s leaves under 5 s of margin"


@pytest.mark.parametrize("deployment", ["switchyard-service", "switchyard-gateway"])
def test_pods_run_unprivileged_with_resources_a_budget_and_an_autoscaler(deployment: str) -> None:
    spec = _get("Deployment", deployment)["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0, "the image has no USER of its own"
    container = _container(deployment)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}, "writable /tmp"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    # The Service, the budget and the autoscaler all find these pods.
    service = _get("Service", deployment)
    assert service["spec"]["selector"].items() <= labels.items()
    budget = _get("PodDisruptionBudget", deployment)
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    autoscaler = _get("HorizontalPodAutoscaler", deployment)["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
    assert autoscaler["minReplicas"] >= 2, "one replica cannot be drained without an outage"
    assert [m["resource"]["name"] for m in autoscaler["metrics"]] == ["cpu"]
    if "maxUnavailable" in budget["spec"]:
        assert budget["spec"]["maxUnavailable"] < autoscaler["minReplicas"]


def test_the_servicemonitor_scrapes_every_process() -> None:
    monitor = _get("ServiceMonitor", "switchyard")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    for endpoint in endpoints.values():
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["path"] == "/metrics"
    # Each Switchyard process on the port its metrics are served on (the annotations agree).
    for name, port_name in (("switchyard-gateway", "http"), ("switchyard-service", "metrics")):
        service = _get("Service", name)
        assert selector.items() <= service["metadata"]["labels"].items(), name
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == port_name]
        assert port_name in endpoints, name
        annotations = _get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert _port(_container(name), port["targetPort"]) == int(annotations["prometheus.io/port"])


# ---------------------------------------------------------------- PromQL: the metric names a query reads

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE)
_NUMBER = re.compile(
    r"(?<![\w:.])(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)"
)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.DOTALL)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed): every identifier
    that is not a function, keyword, label or duration. Selectors by ``__name__`` are ignored."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("1", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def promql_label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    labels = set()
    for block in _MATCHERS.findall(text):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", block))
    for group in _LABEL_LIST.findall(text):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    return labels


def grafana_query_metric_names(query: str) -> set[str]:
    """A template variable's query: ``label_values(selector, label)`` reads the selector's metric;
    ``label_values(label)`` reads none; anything else is PromQL."""
    found = _LABEL_VALUES.match(query)
    if found:
        return promql_metric_names(found.group(1))
    if re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", query):
        return set()
    return promql_metric_names(query)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            "histogram_quantile(0.99, sum by (le, route) "
            '(rate(a_seconds_bucket{route="x"}[$__rate_interval])))',
            {"a_seconds_bucket"},
        ),
        (
            'sum(rate(a_total{status_class=~"4xx|5xx", env=~"$environment"}[5m])) '
            "/ ignoring (status_class) group_left sum(rate(b_total[5m])) > bool 0.05",
            {"a_total", "b_total"},
        ),
        (
            "sum(rate(c_total[5m])) by (provider) / on(provider) group_left(model) d_info",
            {"c_total", "d_info"},
        ),
        (
            'process_resident_memory_bytes and on (instance) {__name__=~"switchyard_.+", env="a"}',
            {"process_resident_memory_bytes"},
        ),
        ("increase(e_total[1h30m] offset 5m) * 3600 > 1e3 unless f OR g", {"e_total", "f", "g"}),
        ('label_replace(h, "dst", "${1}", "src", "(.*)") + ns:recorded:rate5m', {"h", "ns:recorded:rate5m"}),
        ('sum without (a, b) (i{x="{not a name}"}) @ start()', {"i"}),
        ("vector(0) + scalar(time())", set()),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_promql_label_names() -> None:
    expr = (
        'sum by (provider, model) (rate(x_total{status_class="5xx", error_type!=""}[5m])) '
        "/ ignoring (status_class) group_left sum(rate(x_total[5m]))"
    )
    assert promql_label_names(expr) == {"provider", "model", "status_class", "error_type"}


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("label_values(switchyard_requests_total, environment)", {"switchyard_requests_total"}),
        ('label_values(m_total{environment=~"$environment"}, provider)', {"m_total"}),
        ("label_values(environment)", set()),
        ("query_result(topk(5, n_total))", {"n_total"}),
    ],
)
def test_grafana_query_metric_names(query: str, names: set[str]) -> None:
    assert grafana_query_metric_names(query) == names


# ---------------------------------------------------------------- the dashboard and the alerts


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _dashboard_queries() -> list[str]:
    return [target["expr"] for panel in _panels(_dashboard()) for target in panel.get("targets", [])]


def _variable_queries() -> list[str]:
    queries = []
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is referenced."""
    referenced: dict[str, set[str]] = {}
    for expr in _dashboard_queries():
        for name in promql_metric_names(expr):
            referenced.setdefault(name, set()).add(DASHBOARD.name)
    for query in _variable_queries():
        for name in grafana_query_metric_names(query):
            referenced.setdefault(name, set()).add(f"{DASHBOARD.name} (variables)")
    for rule in _alert_rules():
        for name in promql_metric_names(rule["expr"]):
            referenced.setdefault(name, set()).add(f"{ALERTS.name} {rule['alert']}")
    return referenced


def test_the_dashboard_uses_the_datasource_variable_and_filters() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("environment", "provider", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    ids = []
    for panel in _panels(dashboard):
        ids.append(panel["id"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert promql_metric_names(target["expr"]), f"{panel['title']}: no metric in {target['expr']!r}"
            assert '$environment"' in target["expr"], f"{panel['title']} ignores the environment filter"
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_the_dashboard_covers_every_area() -> None:
    referenced = set().union(*(promql_metric_names(expr) for expr in _dashboard_queries()))
    assert referenced >= {
        "switchyard_requests_total",  # traffic, errors
        "gen_ai_server_request_duration_seconds_bucket",  # latency
        "gen_ai_server_time_to_first_token_seconds_bucket",  # TTFT
        "switchyard_added_latency_seconds_bucket",  # added latency
        "gen_ai_client_token_usage_sum",  # tokens
        "switchyard_cost_usd_total",  # spend
        "switchyard_retries_total",
        "switchyard_fallbacks_total",
        "switchyard_refusals_total",
        "switchyard_in_flight_requests",
        "switchyard_open_streams",
        "switchyard_request_log_queue_depth",
        "switchyard_request_log_drops_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    }
    queries = " ".join(_dashboard_queries())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in queries


def test_every_alert_rule_is_complete() -> None:
    rules = _alert_rules()
    assert {rule["alert"] for rule in rules} == {
        "SwitchyardHighErrorRate",
        "SwitchyardAddedLatencyHigh",
        "SwitchyardRequestLogDrops",
        "SwitchyardBudgetRefusalsRising",
        "SwitchyardUpstreamFailing",
        "SwitchyardCircuitOpen",
    }
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule[
            "alert"
        ]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert promql_metric_names(rule["expr"]), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


# ---------------------------------------------------------------- against a real scrape

_BROKE_KEY = "sk-bf-" + base64.urlsafe_b64encode(b"deploy-test-key-with-no-budget-0").decode().rstrip("=")
_STACK_ENV = {"SY_DEPLOY_BROKE_KEY": _BROKE_KEY}


def _stack_config(upstream_url: str, mode: str) -> dict[str, Any]:
    """The test config, with the shipped config's telemetry and logging settings."""
    shipped = yaml.safe_load(_config_text())
    config = base_config(upstream_url, free_port(), free_port())
    config["logging"] = {**config["logging"], **shipped["logging"]}
    # The service alone serves /metrics on a port of its own; here on loopback, on a free port.
    config["telemetry"] = {**shipped["telemetry"], "metrics_port": free_port(), "metrics_host": "127.0.0.1"}
    config["deployments"]["deploy-fallback"] = {
        "targets": [{"provider": "azure", "model": f"deploy-fails-{mode}"}],
        "fallbacks": ["openai/deploy-fallback-model"],
    }
    # A key with a budget of 0: its calls are refused with 402, as the budget alert expects.
    config["virtual_keys"] = [
        {"id": "deploy-broke", "value": "${SY_DEPLOY_BROKE_KEY}", "budget": {"max_usd": 0}}
    ]
    return config


def _exercise(stack: Stack, upstream: FakeUpstream, mode: str) -> None:
    """A served call, a stream, a call retried then fallen back, and a budget refusal."""
    upstream.script(*[Reply.status(500)] * 3, match=f"deploy-fails-{mode}")
    body = {"messages": [{"role": "user", "content": "hello"}]}
    path = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
    json_body = {"content-type": "application/json"}
    with httpx.Client(base_url=stack.base_url, timeout=30, headers=json_body) as http:
        assert http.post(path.format("deploy-ok"), content=orjson.dumps(body)).status_code == 200
        with http.stream(
            "POST", path.format("deploy-ok"), content=orjson.dumps({**body, "stream": True})
        ) as sse:
            assert sse.status_code == 200
            assert b"[DONE]" in sse.read()
        fell_back = http.post(path.format("deploy-fallback"), content=orjson.dumps(body))
        assert fell_back.status_code == 200, fell_back.text
        refused = http.post(
            path.format("deploy-ok"), content=orjson.dumps(body), headers={"api-key": _BROKE_KEY}
        )
        assert refused.status_code == 402, refused.text


def _scrape(url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx.get(url, timeout=5)
            response.raise_for_status()
            return response.text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module", params=["inprocess", "split"])
def scrape(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The exposition text of every process of a stack (gateway and service when split), after
    it has served a few calls."""
    mode = request.param
    config = _stack_config(upstream_server.url, mode)
    stack = start_stack(mode, config, tmp_path_factory.mktemp(f"deploy-{mode}"), _STACK_ENV)
    try:
        _exercise(stack, upstream_server, mode)
        texts = [_scrape(f"{stack.base_url}/metrics")]
        if mode == "split":  # the service alone serves its own on telemetry.metrics_port
            texts.append(_scrape(f"http://127.0.0.1:{config['telemetry']['metrics_port']}/metrics"))
        yield "\n".join(texts)
    finally:
        stack.stop()


def _families(exposition: str) -> dict[str, str]:
    """Family name (as its ``# TYPE`` line writes it) -> type."""
    families = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            families[name] = kind.strip()
    return families


_SUFFIXES = {
    "_bucket": {"histogram", "gaugehistogram"},
    "_sum": {"histogram", "summary"},
    "_count": {"histogram", "summary"},
    "_total": {"counter"},
    "_created": {"counter", "histogram", "summary"},
}


def _family_of(name: str, families: dict[str, str]) -> str | None:
    if name in families:
        return name
    for suffix, kinds in _SUFFIXES.items():
        base = name.removesuffix(suffix)
        if base != name and families.get(base) in kinds:
            return base
    return None


def test_family_of_maps_sample_names_to_their_family() -> None:
    families = _families(
        "# TYPE a_seconds histogram\n# TYPE b_total counter\n# TYPE c counter\n# TYPE d gauge\n"
    )
    assert _family_of("a_seconds_bucket", families) == "a_seconds"
    assert _family_of("a_seconds_sum", families) == "a_seconds"
    assert _family_of("b_total", families) == "b_total"  # the text format's TYPE line
    assert _family_of("c_total", families) == "c"  # OpenMetrics'
    assert _family_of("d", families) == "d"
    assert _family_of("d_bucket", families) is None  # a gauge has no buckets
    assert _family_of("e_total", families) is None


def _sample_label_names(exposition: str) -> set[str]:
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#") and "{" in line:
            labels = line[line.index("{") + 1 : line.rindex("}")]
            names |= set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="(?:[^"\\]|\\.)*"', labels))
    return names


def test_every_metric_the_dashboard_and_alerts_query_is_in_a_real_scrape(scrape: str) -> None:
    families = _families(scrape)
    referenced = _referenced_metrics()
    assert len(referenced) >= 15, "the extractor found too few metrics: is it broken?"
    missing = {
        name: sorted(where) for name, where in referenced.items() if _family_of(name, families) is None
    }
    assert not missing, f"referenced but not exported: {missing}"


def test_every_label_the_dashboard_and_alerts_use_is_in_a_real_scrape(scrape: str) -> None:
    exported = _sample_label_names(scrape)
    # Prometheus adds `instance` and `job` when it scrapes; `__name__` is the metric name.
    used = set().union(*(promql_label_names(q) for q in [*_dashboard_queries(), *_variable_queries()]))
    used |= set().union(*(promql_label_names(rule["expr"]) for rule in _alert_rules()))
    missing = used - exported - {"instance", "job", "__name__"}
    assert not missing, f"labels queried but on no exported series: {sorted(missing)}"


def test_the_budget_alert_matches_the_refusal_the_stack_made(scrape: str) -> None:
    refusals = [
        line
        for line in scrape.splitlines()
        if line.startswith("switchyard_refusals_total{") and 'status="402"' in line
    ]
    assert refusals, 'no switchyard_refusals_total{status="402"} series after a 402'
    assert any(float(line.rsplit(None, 1)[1]) >= 1 for line in refusals)


def test_the_service_is_headless_so_each_gateway_balances_per_call() -> None:
    # Behind a virtual IP each gateway's one gRPC connection would pin it to one service pod.
    assert _get("Service", "switchyard-service")["spec"]["clusterIP"] == "None"
