"""Hostile configuration files and command lines: each refused in one line on stderr naming the
file, the line or key and the value, with a non-zero exit and no traceback; nothing of a secret,
nothing of our class names (pydantic's, PyYAML's); Ctrl-C and a closed pipe end quietly.

Most cases run the real ``regwatch`` entry point in this process (``main()``, as the console
script calls it); the signals and pipes run it as a process."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regwatch.cli import main
from regwatch.cli.shipping import line_blocks
from regwatch.config import load_config

REGWATCH = [sys.executable, "-m", "regwatch.cli"]
INTERNAL = ("Traceback", "pydantic", "ValidationError", "dict", "NoneType", "<unicode string>", "unexpected")


def regwatch(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """The exit status and stderr of ``regwatch ARGS``."""
    monkeypatch.setattr(sys, "argv", ["regwatch", *args])
    with pytest.raises(SystemExit) as done:
        main()
    _, err = capsys.readouterr()
    assert not any(word in err for word in INTERNAL), err
    return done.value.code, err


def _file(tmp_path: Path, body: str | bytes) -> Path:
    path = tmp_path / "regwatch.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def _laughs(key: str = "paths") -> str:
    """Nine lines that name 9**9 strings: the billion laughs, under a key that takes a list."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "x:\n" + "".join(f"  {line}\n" for line in lines) + f"inputs:\n  - {{format: nginx, {key}: *a8}}\n"


DEEP = "a: " + "[" * 5000 + "]" * 5000 + "\n"


@pytest.mark.parametrize("body, problem", [
    # YAML that would hang, crash or run code
    (DEEP, "nested more than 100 levels deep"),
    ("a: " + "{a: " * 150 + "1" + "}" * 150 + "\n", "line 1, column 400: nested more than 100 levels deep"),
    (_laughs(), "line 7, column 7: more than 200000 values once its aliases are expanded"),
    ("inputs: &a [{format: nginx, paths: *a}]\n", "line 1, column 9: an alias names the node that holds it"),
    ('namespace: !!python/object/apply:os.system ["echo PWNED"]\n',
     "line 1, column 12: the tag !!python/object/apply:os.system is not plain YAML (no tags are read)"),
    ("namespace: !!python/name:os.system\n",
     "line 1, column 12: the tag !!python/name:os.system is not plain YAML (no tags are read)"),
    ("namespace: !vault x\n", "line 1, column 12: the tag !vault is not plain YAML (no tags are read)"),
    # YAML that is wrong: the line and column, not PyYAML's copy of the text
    ("elasticsearch: {hosts: [a]}\nelasticsearch: {hosts: [b]}\n", "line 2, column 1: duplicate key 'elasticsearch'"),
    ("elasticsearch:\n  <<: {request_timeout_s: 5}\n  sniff: true\n  sniff: false\n",
     "line 4, column 3: duplicate key 'sniff'"),
    ('namespace: "a\x1b[31mred"\n', "line 1, column 14: character #x001b is not allowed in YAML"),
    ("namespace: 2026-02-30\n", "line 1, column 12: '2026-02-30' is not a date (day is out of range for month)"),
    ("namespace: a\n---\nnamespace: b\n", "line 2: a second document (after ---): the file holds one"),
    ("namespace:\tx\n\tfoo: 1\n",
     "line 1, column 11: while scanning for the next token: found character '\\t' that cannot start any token"),
    (b"\x00\x01\xff", "not UTF-8 text (byte 2)"),
    # keys: a typo named with the key it likely meant, wherever it is
    ("namespac: x\n", "namespac: unknown key (did you mean namespace?)"),
    ("elasticsearch: {host: ['http://es:9200']}\n", "elasticsearch.host: unknown key (did you mean hosts?)"),
    ("inputs: [{path: [a.log], format: nginx}]\n",
     "inputs.0.paths: required, and missing; inputs.0.path: unknown key (did you mean paths?)"),
    ("rules: {notifiers: {h: {type: webhook, url: 'http://x/', timout_s: 3}}}\n",
     "rules.notifiers.h.timout_s: unknown key (did you mean timeout_s?)"),
    ("batch: {max_doc: 10}\n", "batch.max_doc: unknown key (did you mean max_docs?)"),
    ("inventory: {registriez: []}\n", "inventory.registriez: unknown key (did you mean registries?)"),
    ("elasticsearch: {passwd: hunter2}\n", "elasticsearch.passwd: unknown key (did you mean password_env?)"),
    ("zzz: 1\n", "zzz: unknown key"),
    # types: what the file holds, not our class names
    ("elasticsearch: http://es:9200\n", "elasticsearch: should be a mapping of keys (key: value), not text"),
    ("rules:\n  - a\n", "rules: should be a mapping of keys (key: value), not a list"),
    ("rules: {notifiers: {h: 'http://x/'}}\n",
     "rules.notifiers.h: should be a mapping of keys (key: value), not text"),
    ("- a\n- b\n", "the file holds a list, not a mapping of keys (such as namespace: default)"),
    ("just text\n", "the file holds text, not a mapping of keys (such as namespace: default)"),
    ("rules: {notifiers: {h: {type: webhookz, url: 'http://x/'}}}\n",
     "rules.notifiers.h.type: 'webhookz' is not one of webhook, slack, teams, email, sms, alertmanager, pagerduty, "
     "opsgenie"),
    ("rules: {notifiers: {h: {url: 'http://x/'}}}\n", "rules.notifiers.h.type: required, and missing"),
    # numbers no timer can hold
    ("elasticsearch: {request_timeout_s: .inf}\n", "elasticsearch.request_timeout_s: inf is not a finite number"),
    ("elasticsearch: {request_timeout_s: 1e400}\n", "elasticsearch.request_timeout_s: inf is not a finite number"),
    ("stop_grace_s: .inf\n", "stop_grace_s: inf is not a finite number"),
    ("batch: {max_wait_s: 1e300}\n", "batch.max_wait_s: 1e+300 s is more than 7 days"),
    ("poll_interval_s: 604801\n", "poll_interval_s: 604801 s is more than 7 days"),
    ("probe: {interval_s: .nan}\n", "probe.interval_s: nan is not a finite number"),
    ("rules: {folders: ['~nosuchuser/rules']}\n",
     "rules.folders: '~nosuchuser/rules': ~nosuchuser is no user's home on this host"),
    # ports: a whole number, not what YAML or pydantic would turn into one
    ("metrics_port: true\n", "metrics_port: a port is a whole number from 1 to 65535"),
    ("metrics_port: 9464.0\n", "metrics_port: a port is a whole number from 1 to 65535"),
    ("metrics_port: '9464'\n", "metrics_port: a port is a whole number from 1 to 65535"),
    ("rules: {metrics_port: yes}\n", "rules.metrics_port: a port is a whole number from 1 to 65535"),
    ("probe: {metrics_port: false}\n", "probe.metrics_port: a port is a whole number from 1 to 65535"),
    ("inventory: {metrics_port: 0}\n", "inventory.metrics_port: Input should be greater than or equal to 1"),
    # a file wrong in many places: the first five
    ("".join(f"k{i}: 1\n" for i in range(8)),
     "k0: unknown key; k1: unknown key; k2: unknown key; k3: unknown key; k4: unknown key; and 3 more"),
])
def test_a_hostile_config_is_one_line_naming_the_file_and_the_key(tmp_path: Path, capsys, monkeypatch, body,
                                                                   problem: str) -> None:
    config = _file(tmp_path, body)
    code, err = regwatch(capsys, monkeypatch, "status", "-c", str(config))
    assert (code, err) == (1, f"error: {config}: {problem}\n")
    assert "hunter2" not in err


def test_a_config_that_is_a_pipe_a_device_or_huge_is_refused_unread(tmp_path: Path, capsys, monkeypatch) -> None:
    """A FIFO blocked the read for good, /dev/zero filled the memory."""
    fifo = tmp_path / "regwatch.yaml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        assert regwatch(capsys, monkeypatch, "status", "-c", str(path)) == (
            1, f"error: {path}: not a regular file (a pipe, socket or device)\n")
    fifo.unlink()
    huge = _file(tmp_path, b"#" * (16 * 1024 * 1024 + 1))
    assert regwatch(capsys, monkeypatch, "status", "-c", str(huge)) == (1, f"error: {huge}: larger than 16 MiB\n")
    assert regwatch(capsys, monkeypatch, "status", "-c", str(tmp_path)) == (
        1, f"error: {tmp_path}: is a folder, not a file\n")


def test_a_checkpoint_file_that_is_a_folder_is_named_at_load(tmp_path: Path, capsys, monkeypatch) -> None:
    config = _file(tmp_path, f"checkpoint_file: {tmp_path}\n")
    code, err = regwatch(capsys, monkeypatch, "status", "-c", str(config))
    assert (code, err) == (1, f"error: {config}: checkpoint_file: '{tmp_path}' is a folder: name the file "
                              f"in it (e.g. {tmp_path / 'checkpoints.json'})\n")


def test_merge_keys_read_as_yaml_reads_them_the_mappings_own_keys_winning(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, "elasticsearch:\n  <<: {request_timeout_s: 5, sniff: true}\n"
                                         "  request_timeout_s: 6\n"))
    assert (config.elasticsearch.request_timeout_s, config.elasticsearch.sniff) == (6.0, True)


def test_a_billion_laughs_in_a_rule_query_is_refused_before_it_is_expanded(tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    """A rule's Query DSL takes any mapping: ``rules test`` walked the nine billion values and
    held the machine (420 MB and counting after a minute)."""
    lines = ['&a0 {"k0": "x", "k1": "x", "k2": "x", "k3": "x", "k4": "x", "k5": "x", "k6": "x", "k7": "x"}']
    lines += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("rules:\n  - name: laughs\n    type: threshold\n    condition: {op: '>', value: 1}\n"
                                  f"    notify: []\n    query: {{bool: {{filter: [{', '.join(lines)}]}}}}\n")
    code, err = regwatch(capsys, monkeypatch, "rules", "validate", str(rules))
    column = len("    query: {bool: {filter: [") + len(", ".join(lines[:5])) + len(", ") + 1  # at &a5
    assert (code, err) == (1, f"error: {rules / 'r.yaml'}: line 6, column {column}: more than 200000 values once its "
                              "aliases are expanded\n")


def test_a_route_table_that_does_not_load_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    table = tmp_path / "routes.yaml"
    table.write_text("platform: x\nplatform: y\n")
    code, err = regwatch(capsys, monkeypatch, "parse", "-f", "nginx", "--routes", str(table), str(table))
    assert (code, err) == (2, f"error: {table}: line 2, column 1: duplicate key 'platform'\n")


@pytest.mark.parametrize("args, line", [
    (["parse", "--bogus", "-f", "nginx", "x.log"],
     "No such option: --bogus (Possible options: --routes) (see regwatch parse --help)"),
    (["parse", "-f", "nginx"], "Missing argument 'files'. (see regwatch parse --help)"),
    (["setup", "--replicas", "x"], "Invalid value for '--replicas': Input should be a valid integer, unable to parse "
                                   "string as an integer (see regwatch setup --help)"),
    (["setup", "--shards", "0"], "Invalid value for '--shards': Input should be greater than or equal to 1 (see "
                                 "regwatch setup --help)"),
    (["top", "--refresh", "fast"], "Invalid value for '--refresh': Input should be a valid number, unable to parse "
                                   "string as a number (see regwatch top --help)"),
    (["nosuchcommand"], "No such command 'nosuchcommand'. (see regwatch --help)"),
    (["rules", "backtest", "r", "--from", "yesterday", "--to", "now"],
     "--from 'yesterday': not an ISO time or epoch seconds"),
    (["rules", "backtest", "r", "--from", "10", "--to", "5"], "--from '10' is not before --to '5'"),
    (["rules", "test", "r", "--at", "1e400"], "--at '1e400': not a time between 1970 and 9999"),
    (["kibana", "import", "--url", "http://u:s3cretpw@kib ana:5601"],
     "--url 'http://u:***@kib ana:5601': not an http or https URL (e.g. http://127.0.0.1:5601)"),
    (["kibana", "import", "--url", "http://u:s3cretpw@kibana:99999"],
     "--url 'http://u:***@kibana:99999': not a URL (Port out of range 0-65535)"),
])
def test_a_bad_command_line_is_one_line_and_exit_2(capsys, monkeypatch, args: list[str], line: str) -> None:
    code, err = regwatch(capsys, monkeypatch, *args)
    assert (code, err) == (2, f"error: {line}\n")


def test_an_api_key_variable_named_but_not_set_is_a_warning(tmp_path: Path, capsys, monkeypatch) -> None:
    """``api_key_env: REGWATCH_KEY`` with the variable unset sent every request without a key, in silence."""
    monkeypatch.delenv("REGWATCH_TEST_UNSET_KEY", raising=False)
    config = _file(tmp_path, "elasticsearch: {hosts: ['http://127.0.0.1:9'], api_key_env: REGWATCH_TEST_UNSET_KEY, "
                             "request_timeout_s: 1}\n")
    code, err = regwatch(capsys, monkeypatch, "setup", "-c", str(config))
    assert code == 1 and err.splitlines()[0] == ("warning: api_key_env: REGWATCH_TEST_UNSET_KEY is not set or empty: "
                                                 "requests go without an API key")
    assert err.splitlines()[1].startswith("error: Elasticsearch at http://127.0.0.1:9: ConnectionError")


def test_an_unknown_format_is_one_line_naming_the_formats(tmp_path: Path, capsys, monkeypatch) -> None:
    from parsers import FORMATS

    code, err = regwatch(capsys, monkeypatch, "parse", "-f", "apache", str(tmp_path))
    assert (code, err) == (2, f"error: --format 'apache': not a format regwatch reads; one of: {', '.join(FORMATS)}\n")


class _Endless(io.RawIOBase):
    """/dev/zero for ``zeros`` reads, then the bytes of ``tail``."""

    def __init__(self, zeros: int, tail: bytes) -> None:
        self.zeros, self.tail = zeros, tail

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.zeros:
            self.zeros -= 1
            return b"\0" * size
        out, self.tail = self.tail[:size], self.tail[size:]
        return out


def test_parse_reads_a_stream_without_newlines_in_bounded_memory() -> None:
    """``regwatch parse /dev/zero`` held every byte read, waiting for a newline (readlines)."""
    blocks = list(line_blocks(_Endless(1000, b"tail\nok\nlast"), block_bytes=64, max_line_bytes=256))
    assert blocks == [[b"\0" * 256], [b"ok\n"], [b"last"]]
    assert list(line_blocks(io.BytesIO(b"a\nb\r\nc\rd\n"), block_bytes=3)) == [[b"a\n"], [b"b\r\n"], [b"c\rd\n"]]


def _reading_stdin(pid: int) -> None:
    """Until process ``pid`` sits in read(2) on its standard input (Linux: /proc/PID/syscall)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/syscall").read_text().startswith("0 0x0 "):
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never read its standard input")


def test_ctrl_c_and_a_closed_pipe_end_quietly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reading = subprocess.Popen([*REGWATCH, "parse", "-f", "nginx", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _reading_stdin(reading.pid)  # in the command, waiting for lines: then Ctrl-C
        reading.send_signal(signal.SIGINT)
        _, err = reading.communicate(timeout=60)
    finally:
        if reading.poll() is None:
            reading.kill()
            reading.wait()
    assert (reading.returncode, err) == (130, b"")
    log = tmp_path / "a.log"
    log.write_bytes(b'1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "GET /health HTTP/1.1" 200 2 "-" "c"\n' * 200_000)
    piped = subprocess.Popen([*REGWATCH, "parse", "-f", "nginx", str(log)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert piped.stdout.readline().startswith(b'{"@timestamp"')
    piped.stdout.close()  # what `| head -1` does
    _, err = piped.communicate(timeout=120)
    assert (piped.returncode, err) == (1, b"")


@pytest.mark.skipif(os.geteuid() != 0, reason="what root reads: run as root")
def test_as_root_a_config_or_key_file_another_user_can_change_is_refused(tmp_path: Path, capsys,
                                                                        monkeypatch) -> None:
    """Whoever can change the file decides what root reads and ships, and where the API key goes."""
    refusal = "run as root, regwatch reads only files root alone can change"
    config = _file(tmp_path, "namespace: x\n")
    os.chown(config, 1000, -1)
    assert regwatch(capsys, monkeypatch, "status", "-c", str(config)) == (
        1, f"error: {config}: the file {config} belongs to uid 1000, not root: {refusal}\n")
    os.chown(config, 0, -1)
    config.chmod(0o666)
    assert regwatch(capsys, monkeypatch, "status", "-c", str(config)) == (
        1, f"error: {config}: the file {config} is writable by every user (mode 0666): {refusal}\n")
    config.chmod(0o644)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    key = shared / "es.key"
    key.write_text("id:key\n")
    config.write_text(f"elasticsearch: {{api_key_file: {key}}}\n")
    assert regwatch(capsys, monkeypatch, "status", "-c", str(config)) == (
        1, f"error: {config}: elasticsearch.api_key_file: the folder {shared} is writable by every user (mode 0777): "
           f"{refusal}\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(config)
    shared.chmod(0o1777)  # sticky, as /tmp: each file its owner's; then the file itself decides
    os.chown(key, 1000, -1)
    assert regwatch(capsys, monkeypatch, "status", "-c", str(link)) == (
        1, f"error: {link}: elasticsearch.api_key_file: the file {key} belongs to uid 1000, not root: {refusal}\n")
