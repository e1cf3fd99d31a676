"""A second local node with security on: TLS on HTTP (a CA and the node's certificate,
made by openssl) and the ``elastic`` user's password set through the
keystore's ``bootstrap.password``, as an operator would. Run by the node's unprivileged user."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regwatch.demo.ports import free_port
from regwatch.localnode.distribution import install_distribution
from regwatch.localnode.java import find_java_home
from regwatch.localnode.trust import give_to, node_user


@dataclass
class SecureNode:
    url: str
    ca_file: Path
    password: str  # the elastic user's
    config: Path | None = None  # its ES_PATH_CONF: roles.yml, users, users_roles


def _tool(home: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    done = subprocess.run([str(home / "bin" / args[0]), *args[1:]], env=env, input=stdin, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {done.returncode}: {done.stderr[-1000:] or done.stdout[-1000:]}")


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} exited {done.returncode}: {done.stderr[-1000:]}")


def _certificates(work: Path, certs: Path) -> None:
    """A CA (work/ca/ca.crt, ca.key) and the node's certificate for 127.0.0.1 and localhost signed by
    it (certs/node/node.crt, node.key), as ``elasticsearch-certutil ca`` and ``cert`` would lay
    them out; the CA copied to certs/ca.crt."""
    ca, node = work / "ca", certs / "node"
    ca.mkdir(parents=True)
    node.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=regwatch test CA",
             "-keyout", str(ca / "ca.key"), "-out", str(ca / "ca.crt"),
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=node", "-keyout", str(node / "node.key"),
             "-out", str(work / "node.csr"))
    extensions = work / "node.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", str(work / "node.csr"), "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
             "-CAcreateserial", "-days", "3", "-extfile", str(extensions), "-out", str(node / "node.crt"))
    shutil.copy(ca / "ca.crt", certs / "ca.crt")


def _file_realm_users(config: Path, users: dict[str, tuple[str, list[str]]]) -> None:
    """The file realm's ``users`` (PBKDF2-SHA512 hashes, a format the realm reads, as
    ``elasticsearch-users useradd`` writes them) and ``users_roles``."""
    by_role: dict[str, list[str]] = {}
    rows = []
    for name, (user_password, user_roles) in users.items():
        salt = secrets.token_bytes(32)
        digest = hashlib.pbkdf2_hmac("sha512", user_password.encode(), salt, 10_000, 32)
        rows.append(f"{name}:{{PBKDF2}}10000${b64encode(salt).decode()}${b64encode(digest).decode()}\n")
        for role in user_roles:
            by_role.setdefault(role, []).append(name)
    _replace(config / "users", "".join(rows))
    _replace(config / "users_roles", "".join(f"{role}:{','.join(names)}\n" for role, names in by_role.items()))


def _replace(path: Path, text: str) -> None:
    """Whole or not at all: a running node rereads the file when it changes."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    staged.chmod(0o644)
    os.replace(staged, path)


@contextmanager
def secure_node(roles: dict | None = None,
                users: dict[str, tuple[str, list[str]]] | None = None) -> Iterator[SecureNode]:
    """``roles``: written to the file realm's roles.yml; ``users``: name -> (password, roles),
    written to the file realm's ``users`` and ``users_roles`` (the native realm needs the .security index, whose mapping
    uses analysis-common's pattern_capture filter, absent from the integ-test distribution)."""
    home = install_distribution(None)
    java = find_java_home()
    user = node_user()
    work = Path(tempfile.mkdtemp(prefix="regwatch-secure-", dir="/var/tmp"))
    work.chmod(0o755)
    config = work / "config"
    shutil.copytree(home / "config", config)
    env = {"PATH": "/usr/bin:/bin", "ES_JAVA_HOME": str(java), "ES_PATH_CONF": str(config), "HOME": str(work)}
    password = secrets.token_urlsafe(18)
    port = free_port()
    process = None
    trusted: Path | None = None
    try:
        # The CA and the node's certificate by openssl, the users straight into the file realm's
        # files, one keystore command: each of the distribution's own tools starts a JVM (5-9 s
        # apiece on a busy runner, ten of them once), and what the node reads is the same.
        _certificates(work, config / "certs")
        _tool(home, env, "elasticsearch-keystore", "add", "-f", "-x", "bootstrap.password", stdin=password)
        if roles:
            import yaml

            (config / "roles.yml").write_text(yaml.safe_dump(roles))
        _file_realm_users(config, users or {})
        settings = {
            "cluster.name": "regwatch-secure", "node.name": "regwatch-secure", "discovery.type": "single-node",
            "network.host": "127.0.0.1", "http.port": port, "transport.port": free_port(),
            "path.data": str(work / "data"), "path.logs": str(work / "logs"),
            "cluster.routing.allocation.disk.threshold_enabled": False,
            # How often the file realm and roles.yml are reread: users added to a running node
            # (shared_secure_node) are known within a second.
            "resource.reload.interval.high": "1s",
            "xpack.security.enabled": True, "xpack.security.http.ssl.enabled": True,
            "xpack.security.http.ssl.key": "certs/node/node.key",
            "xpack.security.http.ssl.certificate": "certs/node/node.crt",
            "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
        }
        (config / "elasticsearch.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
        for sub in ("data", "logs"):
            (work / sub).mkdir()
        if user is not None:
            give_to(work, user)
        # What the clients trust, in a folder of root's own: regwatch run as root refuses a CA file
        # another user (here the node's) could change, as the work folder now is
        trusted = Path(tempfile.mkdtemp(prefix="regwatch-secure-ca-", dir="/var/tmp"))
        ca_file = trusted / "ca.crt"
        shutil.copy(work / "ca" / "ca.crt", ca_file)
        ca_file.chmod(0o644)
        with (work / "logs" / "console.log").open("ab") as console:
            process = subprocess.Popen([str(home / "bin" / "elasticsearch")], cwd=work,
                                       env={**env, "ES_JAVA_OPTS": "-Xms512m -Xmx512m"}, stdin=subprocess.DEVNULL,
                                       stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
                                       user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                                       extra_groups=[] if user else None)
        url = f"https://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=str(ca_file))
        auth = "Basic " + b64encode(f"elastic:{password}".encode()).decode()
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the secure node exited: {(work / 'logs' / 'console.log').read_text()[-2000:]}")
            try:
                request = urllib.request.Request(f"{url}/_cluster/health?wait_for_status=yellow&timeout=5s",
                                                 headers={"Authorization": auth})
                with urllib.request.urlopen(request, context=context, timeout=10) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the secure node did not answer within 180 s")
            time.sleep(0.25)
        yield SecureNode(url, ca_file, password, config)
    finally:
        if process is not None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        shutil.rmtree(work, ignore_errors=True)
        if trusted is not None:
            shutil.rmtree(trusted, ignore_errors=True)


_SHARED: dict[str, Any] = {}


def shared_secure_node(pytest_config: Any, roles: dict, users: dict[str, tuple[str, list[str]]]) -> SecureNode:
    """One secured node for the whole run, for every test module that asks for one: a node start is
    the slowest part of these modules. A module's roles and users are added to the running node's
    file realm (it rereads its files; each new user is checked to authenticate with its roles in
    force) next to those of earlier modules; each module keeps to names of its own, and a name
    asked again with another definition is an error. Stopped when the run ends, pass or fail
    (``pytest_config.add_cleanup``)."""
    if not _SHARED:
        stack = ExitStack()
        pytest_config.add_cleanup(stack.close)
        node = stack.enter_context(secure_node(roles, users))
        _SHARED.update(node=node, roles=dict(roles), users=dict(users))
        return node
    node, known_roles, known_users = _SHARED["node"], _SHARED["roles"], _SHARED["users"]
    assert node.config is not None
    clashes = [name for name, value in roles.items() if known_roles.get(name, value) != value]
    clashes += [name for name, value in users.items() if known_users.get(name, value) != value]
    assert not clashes, f"the shared secure node already has {clashes} defined otherwise"
    new_users = {name: value for name, value in users.items() if name not in known_users}
    if set(roles) - set(known_roles):
        import yaml

        known_roles.update(roles)
        _replace(node.config / "roles.yml", yaml.safe_dump(known_roles))
    if new_users:
        known_users.update(new_users)
        _file_realm_users(node.config, known_users)
    for name, (user_password, user_roles) in new_users.items():
        _wait_in_force(node, name, user_password, [known_roles[role] for role in user_roles if role in known_roles])
    return node


def _wait_in_force(node: SecureNode, name: str, user_password: str, descriptors: list[dict],
                   timeout: float = 30) -> None:
    """Until ``name`` authenticates and holds the index privileges its roles name (the node has
    reread users, users_roles and roles.yml)."""
    wanted = {index for descriptor in descriptors for entry in descriptor.get("indices", [])
              for index in entry["names"]}
    context = ssl.create_default_context(cafile=str(node.ca_file))
    auth = "Basic " + b64encode(f"{name}:{user_password}".encode()).decode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(f"{node.url}/_security/user/_privileges", headers={"Authorization": auth})
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                held = {index for entry in json.loads(response.read())["indices"] for index in entry["names"]}
                if held >= wanted:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the secure node did not take user {name} within {timeout:.0f} s")
        time.sleep(0.25)
