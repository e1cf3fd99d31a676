"""The demo registry: a real ``mlflow server`` (proxied artifacts, SQLite) and a real nginx in
front of it writing the combined access log with timing fields, as a platform team runs it.

Without nginx (not installed and not installable as this user) the registry is MLflow alone and
the access log is gunicorn's; :class:`Registry` says which in ``front``.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from regwatch.demo.processes import Processes, Spec
from regwatch.demo.wire import REVOKED_TOKEN
from regwatch.packages import which

# nginx's combined format plus request and upstream times: the `nginx` parser reads rt=/uct=/urt=.
# The gateway keeps a deny-list of revoked bearer tokens and answers 401 to them itself, before
# MLflow (the demo's incident 2: a client whose token was revoked keeps calling).
NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format regwatch '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" '
                        'urt="$upstream_response_time"';
    access_log {access_log} regwatch;
    map $http_authorization $token_revoked {{
        default 0;
        "Bearer {revoked_token}" 1;
    }}
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 0;
    client_body_buffer_size 16m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            if ($token_revoked) {{
                add_header WWW-Authenticate 'Bearer error="invalid_token", error_description="token revoked"' always;
                return 401;
            }}
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def mlflow_spec(workdir: Path, port: int, env: dict[str, str] | None = None, access_log: Path | None = None,
                workers: int = 2) -> Spec:
    """``mlflow server`` with proxied artifacts; gunicorn writes ``access_log`` when given."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if not mlflow_bin.exists():
        raise RuntimeError("mlflow is not installed: pip install 'regwatch[demo]' (make demo does)")
    argv = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"), "--workers", str(workers)]
    if access_log is not None:
        argv += ["--gunicorn-opts", f"--access-logfile {access_log}"]
    # No server jobs (MLflow 3's huey consumers, for GenAI evaluation and trace rollups): a model
    # registry does not use them, and they are seven more processes of 250 MB each.
    return Spec("mlflow", argv, {"MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                                 **(env or {})})


def nginx_spec(workdir: Path, port: int, upstream_port: int, access_log: Path) -> Spec | None:
    """nginx in the foreground with its own prefix and configuration; None without nginx."""
    nginx = which("nginx")
    if nginx is None:
        return None
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, access_log=access_log, port=port, upstream_port=upstream_port,
                                        revoked_token=REVOKED_TOKEN))
    return Spec("nginx", [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf),
                          "-g", "daemon off;"])


def wait_healthy(url: str, processes: Processes, name: str, timeout_s: float = 120.0) -> None:
    """Until ``url`` answers 200; RuntimeError naming the log when the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if processes.running(name) is None:
            raise RuntimeError(f"{name} exited: see {processes.log_of(name)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} not healthy after {timeout_s:.0f} s at {url}: see {processes.log_of(name)}")


@dataclass
class Registry:
    """MLflow, and nginx in front when there is one: start, stop (the incident), start again."""

    workdir: Path
    processes: Processes
    port: int  # what clients use: nginx's port, or MLflow's without nginx
    mlflow_port: int
    env: dict[str, str]
    use_nginx: bool = True

    def __post_init__(self) -> None:
        self.access_log = self.workdir / "access.log"
        self.nginx = nginx_spec(self.workdir, self.port, self.mlflow_port, self.access_log) if self.use_nginx else None
        self.front = "nginx" if self.nginx is not None else "gunicorn"
        if self.nginx is None:
            self.mlflow_port = self.port
        self.mlflow = mlflow_spec(self.workdir, self.mlflow_port, self.env,
                                  access_log=None if self.nginx else self.access_log)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_format = "nginx" if self.nginx is not None else "gunicorn"

    def start(self) -> None:
        self.processes.start(self.mlflow)
        wait_healthy(f"http://127.0.0.1:{self.mlflow_port}/health", self.processes, "mlflow")
        if self.nginx is not None:
            self.processes.start(self.nginx)
            wait_healthy(f"{self.url}/health", self.processes, "nginx", timeout_s=20)

    def stop(self) -> None:
        if self.nginx is not None:
            self.processes.stop("nginx")
        self.processes.stop("mlflow")


_TEMPLATE: list[Path] = []  # an empty database at the installed MLflow's schema, made once per process


def _migrated_database() -> Path | None:
    """An empty MLflow database with every migration applied (``mlflow db upgrade``), made once per
    process in a folder of its own (0700): a new server that starts from a copy skips the
    migrations, several seconds each time (a test run starts dozens). None when it cannot be made:
    the server then migrates a fresh database itself, as before."""
    import subprocess
    import tempfile

    if _TEMPLATE:
        return _TEMPLATE[0]
    folder = Path(tempfile.mkdtemp(prefix="regwatch-mlflow-schema-"))
    database = folder / "mlflow.db"
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    try:
        done = subprocess.run([str(mlflow_bin), "db", "upgrade", f"sqlite:///{database}"], capture_output=True,
                              timeout=300, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not database.exists():
        return None
    _TEMPLATE.append(database)
    return database


@contextmanager
def mlflow_server(workdir: Path, port: int | None = None, env: dict[str, str] | None = None, gunicorn: bool = True):
    """A real ``mlflow server`` for the length of a block; yields (url, access_log_path).

    The tests' registry: no nginx, gunicorn's access log when ``gunicorn``.
    """
    from regwatch.demo.ports import free_port

    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "mlflow.db").exists() and (template := _migrated_database()) is not None:
        shutil.copyfile(template, workdir / "mlflow.db")
    port = port or free_port()
    processes = Processes(workdir)
    access_log = workdir / "mlflow_access.log"
    spec = mlflow_spec(workdir, port, env, access_log=access_log if gunicorn else None, workers=1)
    processes.start(spec)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", processes, "mlflow")
        yield f"http://127.0.0.1:{port}", access_log
    finally:
        processes.stop("mlflow")


def clean(workdir: Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
