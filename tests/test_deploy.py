"""The deployment files, checked without an engine: docker-compose.yml against the Compose
specification's schema, the Kubernetes manifests against Kubernetes' schemas (kubernetes-validate,
strict), the systemd units with ``systemd-analyze verify`` and ``security --offline``, the
Dockerfile by building the wheel from exactly what it copies. Each checker is also shown a broken
file and must refuse it. Then the policies the operator guide promises: images pinned by digest,
health checks, restart policies, non-root, read-only logs, no secret in a file, one credential per
service, /metrics reachable only by Prometheus, a DaemonSet that works on a stock node, the image's
Python dependencies installed from a lock with hashes."""

from __future__ import annotations

import json
import os
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
KEYED_SERVICES = ("shipper", "probe", "rules")  # the ones holding an Elasticsearch API key
DIGEST = re.compile(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}")
# Images no digest could be verified for from here (no registry access): regwatch's own, built
# locally, and two upstream images; docs/operations.md tells operators to pin them.
UNPINNED = {"regwatch:0.1.0", "regwatch-demo:0.1.0", "docker.elastic.co/kibana/kibana:8.19.21",
            "ghcr.io/mlflow/mlflow:v3.17.2"}


def _pinned(image: str) -> bool:
    return bool(DIGEST.fullmatch(image)) or image in UNPINNED


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
        tag = image.split("@")[0].rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: image {image} not pinned"
        assert _pinned(image), f"{name}: image {image} not pinned by digest"
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
    assert {"esdata", "checkpoints", "keys", "ca", "ca-key", "es-certs"} <= set(compose["volumes"])
    assert {n for n, s in services.items() if "demo" in s.get("profiles", [])} == {"mlflow", "nginx", "workload"}
    assert "kibana_system/_password" in " ".join(services["es-setup"]["command"])
    assert "--api-keys" in services["regwatch-setup"]["command"][0]


def _volume_sources(service: dict) -> dict[str, str]:
    """mount point -> source of a compose service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def _yaml_config(service: dict) -> dict:
    """The regwatch configuration a compose service runs with (the file after ``-c``)."""
    target = service["command"][service["command"].index("-c") + 1]
    source = next(v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target)
    return yaml.safe_load((ROOT / source).read_text())


def test_compose_gives_each_service_its_own_credential_and_nothing_more() -> None:
    services = _compose()["services"]
    key_volumes = {f"{name}-key" for name in KEYED_SERVICES}
    secret_variables = {"ELASTIC_PASSWORD", "KIBANA_PASSWORD", "REGWATCH_WEBHOOK_SECRET", "KIBANA_ENCRYPTION_KEY"}
    for name in REGWATCH_SERVICES:
        service = services[name]
        mounted = set(_volume_sources(service).values())
        own = {f"{name}-key"} if name in KEYED_SERVICES else set()
        assert mounted & (key_volumes | {"keys"}) == own, f"{name} mounts {mounted & (key_volumes | {'keys'})}"
        environment = set(service.get("environment") or {})
        assert environment & secret_variables == ({"REGWATCH_WEBHOOK_SECRET"} if name == "audit-receiver" else set())
        assert "secrets" not in service and "env_file" not in service
        if name in KEYED_SERVICES:
            config = _yaml_config(service)
            key_file = config["elasticsearch"]["api_key_file"]
            mount = str(Path(key_file).parent)
            assert _volume_sources(service)[mount] == f"{name}-key", f"{name}: {key_file} is not in its own volume"
            assert f"{mount}:ro" in " ".join(service["volumes"])
    # Only the setup container writes the keys, each into its own service's volume.
    setup = services["regwatch-setup"]
    assert key_volumes | {"keys"} <= set(_volume_sources(setup).values())
    for name in KEYED_SERVICES:
        assert '/keys/$$service.key" "/out/$$service/es-api-key"' in setup["command"][0]
        assert _volume_sources(setup)[f"/out/{name}"] == f"{name}-key"
    for name, service in services.items():
        if name not in REGWATCH_SERVICES and name != "regwatch-setup":
            assert not set(_volume_sources(service).values()) & (key_volumes | {"keys"}), name
    assert set(services["workload"]["environment"]) == {"REGWATCH_WEBHOOK_SECRET"}


def test_compose_keeps_the_ca_key_from_kibana_and_elasticsearch() -> None:
    services = _compose()["services"]
    holders = {name for name, service in services.items() if "ca-key" in _volume_sources(service).values()}
    assert holders == {"certs"}
    script = services["certs"]["command"][-1]
    assert "chmod 0600 /ca-key/ca.key" in script and "chown -R 0:0 /ca-key" in script
    assert "/certs/ca/ca.key" not in script and "ca.key /ca/" not in script  # never in the volume everyone mounts
    assert services["certs"]["network_mode"] == "none"
    assert _volume_sources(services["kibana"]).get("/usr/share/kibana/config/ca") == "ca"
    assert set(_volume_sources(services["elasticsearch"]).values()) == {"es-certs", "ca", "esdata"}


def test_compose_serves_metrics_only_on_the_internal_network() -> None:
    compose = _compose()
    services = compose["services"]
    metrics = compose["networks"]["metrics"]
    assert metrics["internal"] is True
    subnet = metrics["ipam"]["config"][0]["subnet"]
    import ipaddress

    for name, port_key in (("shipper", "metrics_port"), ("probe", "probe.metrics_port"),
                           ("rules", "rules.metrics_port")):
        service = services[name]
        address = service["networks"]["metrics"]["ipv4_address"]
        assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
        config = _yaml_config(service)
        section = config if "." not in port_key else config[port_key.split(".")[0]]
        assert section["metrics_address"] == address, f"{name} listens on {section['metrics_address']}"
        port = section.get("metrics_port") or {"shipper": 9464, "probe": 9465, "rules": 9466}[name]
        assert f"http://{address}:{port}/metrics" in " ".join(service["healthcheck"]["test"])
        assert "ports" not in service
    on_metrics = {name for name, service in services.items() if "metrics" in (service.get("networks") or {})}
    assert on_metrics == {"shipper", "probe", "rules"}


def _loadable(text: str, tmp_path: Path, name: str):
    """One of the deployment's regwatch configurations through regwatch's own model, its secret
    and CA paths pointed at files that exist here."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    text = re.sub(r"(/certs/ca/ca\.crt|/keys/\w+\.key|/etc/regwatch/secrets/[\w.]+|/run/secrets/regwatch/[\w.-]+"
                  r"|/run/credentials/[\w.-]+/[\w.-]+|/etc/regwatch/ca\.crt)", str(secret), text)
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
    for _name, doc in found:
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


def _pod(docs, name: str) -> dict:
    return next(d for _, d in docs if d["kind"] in ("Deployment", "DaemonSet") and d["metadata"]["name"] == name
                )["spec"]["template"]["spec"]


def _secrets_of(pod: dict) -> set[str]:
    """Every Secret a pod can read: volumes (plain or projected) and environment."""
    found = set()
    for volume in pod["volumes"]:
        if "secret" in volume:
            found.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                found.add(source["secret"]["name"])
    for container in pod["containers"] + pod.get("initContainers", []):
        for entry in container.get("envFrom", []):
            if "secretRef" in entry:
                found.add(entry["secretRef"]["name"])
        for entry in container.get("env", []):
            if "secretKeyRef" in entry.get("valueFrom", {}):
                found.add(entry["valueFrom"]["secretKeyRef"]["name"])
    return found


def test_kubernetes_pods_mount_only_their_own_key() -> None:
    docs = _manifests()
    expected = {"regwatch-shipper": {"regwatch-shipper"}, "mlflow": {"regwatch-shipper"},
                "regwatch-probe": {"regwatch-probe"}, "regwatch-rules": {"regwatch-rules", "regwatch-rules-notifiers"}}
    for name, secrets in expected.items():
        pod = _pod(docs, name)
        assert _secrets_of(pod) == secrets, f"{name} can read {_secrets_of(pod)}"
        service = next(iter(s for s in secrets if not s.endswith("notifiers"))).removeprefix("regwatch-")
        volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
        sources = volume["projected"]["sources"]
        assert sources[0]["secret"]["items"] == [{"key": "api-key", "path": f"{service}.key"}]
        assert volume["projected"]["defaultMode"] == 0o400
    configmap = next(d for _, d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "regwatch")
    for service in ("shipper", "probe", "rules"):
        config = yaml.safe_load(configmap["data"][f"{service}.yaml"])
        assert config["elasticsearch"]["api_key_file"] == f"/etc/regwatch/secrets/{service}.key"


def test_the_daemonset_works_on_a_stock_node() -> None:
    """The kubelet makes the checkpoints' hostPath root 0755; the unprivileged shipper must own
    it. nginx's logs are root:adm 0640: the pod must be in group adm (4)."""
    pod = _pod(_manifests(), "regwatch-shipper")
    checkpoints = next(v for v in pod["volumes"] if v["name"] == "checkpoints")
    assert checkpoints["hostPath"] == {"path": "/var/lib/regwatch", "type": "DirectoryOrCreate"}
    assert 4 in pod["securityContext"]["supplementalGroups"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["install", "-d", "-o", "10001", "-g", "10001", "-m", "0700", "/var/lib/regwatch"]
    assert init["volumeMounts"] == [{"name": "checkpoints", "mountPath": "/var/lib/regwatch"}]
    context = init["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    (shipper,) = pod["containers"]
    assert shipper["securityContext"]["runAsUser"] == 10001 and shipper["securityContext"]["runAsNonRoot"]
    assert {"name": "checkpoints", "mountPath": "/var/lib/regwatch"} in shipper["volumeMounts"]
    # The same command on a folder made root 0755 leaves it the shipper's, 0700 (GNU install, as in the image).
    if os.geteuid() == 0 and shutil.which("install"):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "regwatch"
            target.mkdir(mode=0o755)
            subprocess.run([*init["command"][:-1], str(target)], check=True)
            st = target.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (10001, 10001, 0o700)


def test_kubernetes_metrics_admit_only_prometheus() -> None:
    docs = _manifests()
    policies = {d["metadata"]["name"]: d["spec"] for _, d in docs if d["kind"] == "NetworkPolicy"}
    prometheus = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    for _, workload in ((n, d) for n, d in docs if d["kind"] in ("Deployment", "DaemonSet")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in policies.values()
                    if p["podSelector"]["matchLabels"].items() <= labels.items() and "Ingress" in p["policyTypes"]]
        assert covering, f"{workload['metadata']['name']}: no NetworkPolicy"
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for port in container.get("ports", []):
                admitted = [rule for policy in covering for rule in policy["ingress"]
                            if port["containerPort"] in [p["port"] for p in rule.get("ports", [])]]
                assert admitted, f"{container['name']}: port {port['containerPort']} unreachable"
                if port["name"] == "metrics":
                    assert all(rule.get("from") == prometheus for rule in admitted), container["name"]
    for policy in policies.values():
        for rule in policy["ingress"]:
            assert rule.get("ports"), "a rule admitting every port"


def test_images_are_pinned_by_digest() -> None:
    images = {c["image"].split()[0] for _, d in _manifests() if d["kind"] in ("Deployment", "DaemonSet")
              for c in d["spec"]["template"]["spec"]["containers"]
              + d["spec"]["template"]["spec"].get("initContainers", [])}
    images |= {s["image"] for s in _compose()["services"].values()}
    assert {i for i in images if not _pinned(i)} == set()
    assert len([i for i in images if DIGEST.fullmatch(i)]) >= 3


# -- systemd ---------------------------------------------------------------------------------------

def _units(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointed at this checkout's regwatch (verify checks it exists)."""
    units = []
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        target = tmp_path / unit.name
        target.write_text(unit.read_text().replace("/opt/regwatch/bin/regwatch",
                                                   str(Path(sys.executable).parent / "regwatch")))
        units.append(target)
    return units


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)


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


def test_systemd_units_hold_one_credential_each(tmp_path: Path) -> None:
    """No shared environment file: each unit loads its own API key by LoadCredential= (read by the
    configuration's api_key_file from the unit's credentials folder) and, where it needs other
    secrets, reads an environment file of its own."""
    units = {u.name.removeprefix("regwatch-").removesuffix(".service"): u.read_text()
             for u in sorted((ROOT / "deploy" / "systemd").glob("*.service"))}
    env_files = []
    for name, text in units.items():
        assert "regwatch.env" not in text and "regwatch.yaml" not in text, name
        credentials = re.findall(r"^LoadCredential=([\w-]+):(\S+)$", text, re.M)
        env_files += re.findall(r"^EnvironmentFile=-?(\S+)$", text, re.M)
        assert not re.search(r"^Environment=.*(KEY|SECRET|PASSWORD)", text, re.M)
        if name == "audit-receiver":  # no Elasticsearch key: only the webhook secret, from its own file
            assert credentials == [] and re.findall(r"^EnvironmentFile=-?(\S+)$", text, re.M) == [
                "/etc/regwatch/audit-receiver.env"]
            continue
        assert credentials == [("es-api-key", f"/etc/regwatch/credentials/{name}.key")], name
        config_path = re.search(r"^ExecStart=\S+ .* -c (\S+)$", text, re.M).group(1)
        assert config_path == f"/etc/regwatch/{name}.yaml"
        example = (ROOT / "deploy" / "systemd" / f"{name}.yaml").read_text()
        assert yaml.safe_load(example)["elasticsearch"]["api_key_file"] == \
            f"/run/credentials/regwatch-{name}.service/es-api-key"
        assert _loadable(example, tmp_path, f"{name}.yaml").elasticsearch.hosts[0].startswith("https://")
    assert sorted(env_files) == ["/etc/regwatch/audit-receiver.env", "/etc/regwatch/probe.env",
                                 "/etc/regwatch/rules.env"]  # one per service; the shipper has none


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
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base)
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
    for needed in ("regwatch/cli/__init__.py", "pipeline/roles.yaml", "contract/mappings.yaml",
                   "parsers/routes/mlflow.yaml", "rules/builtin/registry.yaml", "regwatch/packages.yaml",
                   "regwatch/demo/demo.yaml", "kibana/regwatch.ndjson", "grafana/regwatch.json"):
        assert needed in names, f"{needed} not in the image's package"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "regwatch = regwatch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_image_installs_its_dependencies_from_a_lock_with_hashes() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-compile --require-hashes --no-deps --only-binary=:all: -r requirements.lock" in dockerfile
    assert "COPY requirements.lock ./" in dockerfile
    # regwatch itself: no dependency resolved at build time, nothing from an index
    assert "pip install --no-compile --no-deps --no-build-isolation --no-index ." in dockerfile
    text = (ROOT / "requirements.lock").read_text()
    pinned: dict[str, str] = {}
    for entry in re.split(r"\n(?=[a-z0-9])", text.split("\n", 2)[2].strip()):
        head, *hashes = [part.strip() for part in entry.split("\\") if part.strip()]
        name, version = head.split("==")
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), name
        pinned[canonicalize_name(name)] = version
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [Requirement(r) for r in project["project"]["dependencies"] + project["build-system"]["requires"]]
    for requirement in needed:
        version = pinned.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} not in requirements.lock"
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} but the lock has {version}"


def test_the_documented_zabbix_user_parameters_run_the_regwatch_the_install_gives() -> None:
    """The agent's user parameters named /usr/local/bin/regwatch, where no documented install puts
    it: they run the binary the systemd units start (the virtualenv in /opt/regwatch)."""
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    commands = re.findall(r"^UserParameter=regwatch\.\w+\[\*\],(\S+) check ", doc, re.M)
    assert len(commands) == 2
    started = {re.search(r"^ExecStart=(\S+) ", unit.read_text(), re.M).group(1)  # type: ignore[union-attr]
               for unit in (ROOT / "deploy" / "systemd").glob("regwatch-*.service")}
    assert set(commands) == started == {"/opt/regwatch/bin/regwatch"}
    assert "/usr/local/bin" not in doc
