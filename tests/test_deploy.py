"""The deployment files, checked without an engine: docker-compose.yml against the Compose
specification's schema, the Kubernetes manifests against Kubernetes' schemas (kubernetes-validate,
strict), the systemd units with ``systemd-analyze verify`` and ``security --offline``, the
Dockerfile by building the wheel from exactly what it copies. Each checker is also shown a broken
file and must refuse it. Then the policies the operator guide promises: pinned images, health
checks, restart policies, non-root, read-only logs, no secret in a file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from regwatch.config import load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = json.loads((Path(__file__).parent / "support" / "schemas" / "compose-spec.json").read_text())
K8S_VERSION = "1.30.0"
REGWATCH_SERVICES = ("audit-receiver", "shipper", "probe", "rules")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_errors(document: dict) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(document)]


# -- compose ---------------------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert _compose_errors(_compose()) == []


@pytest.mark.parametrize("breakage", [
    lambda c: c["services"]["shipper"].update(restart=["always"]),
    lambda c: c["services"]["shipper"].update(healthcheck={"test": ["CMD", "true"], "intervl": "5s"}),
    lambda c: c.update(servics={}),
    lambda c: c["services"]["elasticsearch"].update(ports="9200"),
])
def test_the_compose_check_refuses_a_broken_file(breakage) -> None:
    broken = _compose()
    breakage(broken)
    assert _compose_errors(broken)


def test_compose_keeps_its_promises() -> None:
    compose = _compose()
    services = compose["services"]
    one_shot = {"certs", "es-setup", "regwatch-setup", "workload"}
    for name, service in services.items():
        image = service["image"]
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: image {image} not pinned"
        if name in one_shot:
            assert service["restart"] == "no", name
        else:
            assert service["restart"] == "unless-stopped" and "healthcheck" in service, name
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown {needed}"
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|KEY$", key) and key != "KIBANA_USERNAME":
                assert str(value).startswith("${") and ":?" in str(value), f"{name}: {key} must come from .env"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
    for name in REGWATCH_SERVICES:
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert service["depends_on"]["regwatch-setup"]["condition"] == "service_completed_successfully"
    assert any(v.startswith("${REGISTRY_LOG_DIR") and v.endswith(":ro") for v in services["shipper"]["volumes"])
    assert "checkpoints:/var/lib/regwatch" in services["shipper"]["volumes"]
    assert {"esdata", "checkpoints", "keys", "certs"} <= set(compose["volumes"])
    assert {n for n, s in services.items() if "demo" in s.get("profiles", [])} == {"mlflow", "nginx", "workload"}
    assert "kibana_system/_password" in " ".join(services["es-setup"]["command"])
    assert "--api-keys" in services["regwatch-setup"]["command"][0]


def _loadable(text: str, tmp_path: Path, name: str):
    """One of the deployment's regwatch configurations through regwatch's own model, its secret
    and CA paths pointed at files that exist here."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    text = re.sub(r"(/certs/ca/ca\.crt|/keys/\w+\.key|/etc/regwatch/secrets/[\w.]+)", str(secret), text)
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("name", ["shipper.yaml", "probe.yaml", "rules.yaml", "setup.yaml"])
def test_compose_configurations_load(name: str, tmp_path: Path) -> None:
    config = _loadable((ROOT / "deploy" / "compose" / name).read_text(), tmp_path, name)
    assert config.elasticsearch.hosts == ["https://elasticsearch:9200"] and config.elasticsearch.verify_certs


# -- kubernetes ------------------------------------------------------------------------------------

def _manifests() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests_are_valid() -> None:
    found = _manifests()
    assert len(found) >= 8
    for name, doc in found:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("breakage", [
    lambda d: d["spec"].update(replicas="two"),
    lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicy="Sometimes", mystery=1),
    lambda d: d["spec"].pop("selector"),
])
def test_the_kubernetes_check_refuses_a_broken_manifest(breakage) -> None:
    rules = next(d for _, d in _manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "regwatch-rules")
    broken = json.loads(json.dumps(rules))
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kubernetes_manifests_keep_their_promises(tmp_path: Path) -> None:
    docs = _manifests()
    workloads = [d for _, d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"], container["name"]
            assert context["capabilities"]["drop"] == ["ALL"] and not context["allowPrivilegeEscalation"]
            assert container["resources"]["limits"], container["name"]
            assert ":" in container["image"] and not container["image"].endswith(":latest")
    by_name = {d["metadata"]["name"]: d for d in workloads}
    assert by_name["regwatch-rules"]["spec"]["replicas"] == 2
    assert by_name["regwatch-shipper"]["kind"] == "DaemonSet"
    for workload in (by_name["regwatch-shipper"], by_name["mlflow"]):
        shipper = next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "shipper")
        logs = next(m for m in shipper["volumeMounts"] if m["name"] == "registry-logs")
        assert logs["readOnly"] is True
    configmap = next(d for _, d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "regwatch")
    for name, text in configmap["data"].items():
        assert _loadable(text, tmp_path, name).elasticsearch.hosts[0].startswith("https://")


# -- systemd ---------------------------------------------------------------------------------------

def _units(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointed at this checkout's regwatch (verify checks it exists)."""
    units = []
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        target = tmp_path / unit.name
        target.write_text(unit.read_text().replace("/opt/regwatch/bin/regwatch", str(Path(sys.executable).parent / "regwatch")))
        units.append(target)
    return units


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)


def test_systemd_units_verify_and_are_hardened(tmp_path: Path) -> None:
    units = _units(tmp_path)
    assert {u.name for u in units} == {f"regwatch-{n}.service" for n in ("shipper", "audit-receiver", "probe", "rules")}
    for unit in units:
        done = _verify(unit)
        assert done.returncode == 0 and not done.stderr.strip(), f"{unit.name}: {done.stderr}"
        security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                                  capture_output=True, text=True, timeout=60)
        exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout).group(1))
        assert exposure <= 2.0, f"{unit.name}: exposure {exposure}"
        text = unit.read_text()
        assert "User=regwatch" in text and "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text
    shipper = (tmp_path / "regwatch-shipper.service").read_text()
    assert "ReadOnlyPaths=/var/log" in shipper and "StateDirectory=regwatch" in shipper


@pytest.mark.parametrize("breakage", [
    lambda t: t.replace("ExecStart=", "ExecStart=/nonexistent/regwatch-missing #"),
    lambda t: t.replace("ProtectSystem=strict", "ProtectSystem=sometimes"),
    lambda t: t.replace("[Service]", "[Servce]"),
])
def test_the_systemd_check_refuses_a_broken_unit(breakage, tmp_path: Path) -> None:
    unit = _units(tmp_path)[0]
    unit.write_text(breakage(unit.read_text()))
    done = _verify(unit)
    assert done.returncode != 0 or done.stderr.strip()


# -- Dockerfile ------------------------------------------------------------------------------------

def test_dockerfile_builds_a_complete_package_and_runs_unprivileged(tmp_path: Path) -> None:
    """No engine here: the wheel is built from exactly the files the Dockerfile copies, so a file
    the image would miss (a route table, a template, the roles) fails this test."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    base = next(line.split()[1] for line in lines if line.startswith("FROM "))
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base)
    user = next(line.split()[1] for line in lines if line.startswith("USER "))
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 1000
    assert any(line.startswith("ENTRYPOINT") and "regwatch" in line for line in lines)
    context = tmp_path / "context"
    context.mkdir()
    for line in lines:
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: missing"
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / source, context / source)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
                           str(context)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next((tmp_path / "wheel").glob("regwatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("regwatch/cli/__init__.py", "pipeline/roles.yaml", "pipeline/templates/mappings.yaml",
                   "parsers/routes/mlflow.yaml", "rules/builtin/registry.yaml", "regwatch/packages.yaml",
                   "regwatch/demo/demo.yaml", "kibana/regwatch.ndjson", "grafana/regwatch.json"):
        assert needed in names, f"{needed} not in the image's package"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "regwatch = regwatch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
