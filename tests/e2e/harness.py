"""End-to-end harness: a PostgreSQL cluster, the SmartMCA emulator and real Airflow 3 components.

Everything runs as separate processes started from the project's ``.venv``; each process is the
leader of its own process group, writes to its own log file, and is killed (whole group) at the end.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow_provider_smartmca.testing import FULL_KEY

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
E2E_DIR = Path(__file__).resolve().parent
TERMINAL_RUN_STATES = {"success", "failed"}
API_KEY = FULL_KEY
SCOPES = "workflows:read workflows:trigger underwriting:trigger"


class E2EError(AssertionError):
    """A harness step failed or timed out."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5, on_timeout: str = ""
) -> Any:
    """Call ``check`` until it returns a truthy value; raise :class:`E2EError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last_exc, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise E2EError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc!r}) {on_timeout}"
    )


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# --------------------------------------------------------------------------- processes
class Proc:
    """One started process (its own process group) and its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
        self.name, self.argv, self.log = name, argv, log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self._fh.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        self._fh.flush()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd) if cwd else None,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """``kill -9`` the component and every process it forked, as a machine's death would: its
        process group, and every descendant in a group of its own (Airflow 3.3's task supervisor
        runs each task process in a new process group)."""
        tree = descendants(self.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Whatever is left in the group (forked workers, orphans) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._fh.close()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (``/proc/<pid>/stat``: "pid (comm) state ppid ..."), or None if gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    """Every live process descending from ``root`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := parent_pid(int(entry))) is not None:
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def process_cmdlines() -> Iterator[tuple[int, str]]:
    """``(pid, cmdline)`` of every process (``setproctitle`` titles included)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        yield int(entry), raw.replace(b"\0", b" ").decode(errors="replace").strip()


def task_process_pids(ti_id: str) -> list[int]:
    """Pids of the task runner process(es) of a task instance: Airflow titles them ``airflow worker -- <ti id>``."""
    return [pid for pid, cmd in process_cmdlines() if cmd.startswith(f"airflow worker -- {ti_id}")]


# --------------------------------------------------------------------------- postgres
def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)


def ensure_apt_packages(packages: list[str], present: Callable[[], bool]) -> None:
    """Install Debian packages with apt-get unless ``present()`` already says they are there."""
    if present():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise E2EError(f"{' '.join(packages)} missing and cannot apt-get install (need root on Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    if not present():
        raise E2EError(f"apt-get install {' '.join(packages)} did not provide what is needed")


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throwaway PostgreSQL cluster in a temp dir, run as the ``postgres`` user, on a free port."""

    def __init__(self, root: Path):
        ensure_apt_packages(["postgresql"], lambda: _pg_bindir() is not None)
        bindir = _pg_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.root = root
        self.port = free_port()
        self.data = root / "pgdata"
        self.sock = root / "pgsock"
        self.log = root / "postgres.log"
        as_root = os.geteuid() == 0
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if as_root:
            os.chmod(root, 0o755)
            os.chmod(root.parent, 0o755)
            shutil.chown(root, "postgres")
            shutil.chown(self.sock, "postgres")
        pg = self._prefix
        _run(
            [*pg, str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        )
        opts = (
            f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        _run(
            [
                *pg,
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.log),
                "-w",
                "start",
            ]
        )
        _run(
            [
                *pg,
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "airflow",
            ]
        )
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="airflow")
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            _run(
                [*self._prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            )


# --------------------------------------------------------------------------- redis (Celery broker)
class Redis:
    """A throwaway Redis (Debian ``redis-server``) on a free loopback port, without persistence."""

    def __init__(self, root: Path):
        ensure_apt_packages(["redis-server"], lambda: shutil.which("redis-server") is not None)
        self.port = free_port()
        data = root / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(shutil.which("redis-server")),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"),
        ]
        self.proc = Proc("redis", argv, dict(os.environ), root / "logs" / "redis.log")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        wait_for("redis", self._ping, 30)

    def _ping(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=10)

    def unacked(self) -> dict[str, list[Any]]:
        """Task messages a worker received and has not acknowledged (kombu's ``unacked`` hash)."""
        raw = self.client().hgetall("unacked")
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def redeliver(self, tag: str) -> None:
        """Deliver an unacknowledged message again, as kombu's ``restore_by_tag`` does when its
        visibility timeout passes: the same payload, marked redelivered, back on its queue."""
        payload, _exchange, routing_key = self.unacked()[tag]
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"]["redelivered"] = True
        self.client().rpush(routing_key, json.dumps(payload))

    def stop(self) -> None:
        self.proc.stop()


# --------------------------------------------------------------------------- emulator
class EmulatorProc:
    """The SmartMCA emulator in its own process, with its admin API."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.port = free_port()
        cfg = root / "emulator.json"
        cfg.write_text(json.dumps(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(
            "emulator",
            [
                str(BIN / "python"),
                "-m",
                "airflow_provider_smartmca.testing",
                "--port",
                str(self.port),
                "--config",
                str(cfg),
            ],
            dict(os.environ),
            root / "logs" / "emulator.log",
        )
        wait_for("emulator", lambda: http("GET", f"{self.url}/_emulator/health", timeout=2)[0] == 200, 30)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, data = http(method, f"{self.url}/_emulator/{path}", body)
        if status >= 400:
            raise E2EError(f"emulator admin {method} {path} -> {status} {data}")
        return data

    def reset(self) -> None:
        self.admin("POST", "reset")

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "requests")["data"])

    def executions(self, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return list(self.admin("GET", "executions" + (f"?{qs}" if qs else ""))["data"])

    def fault(self, **spec: Any) -> dict[str, Any]:
        return dict(self.admin("POST", "faults", spec))

    def start_execution(self, workflow_type: str, entity_type: str, entity_id: str) -> str:
        """Start an execution through the public API, as the SmartMCA app or another system would."""
        status, data = http(
            "POST",
            f"{self.url}/api/public/v1/workflows/trigger",
            {"workflowType": workflow_type, "entityType": entity_type, "entityId": entity_id},
            {"Authorization": f"Bearer {API_KEY}"},
        )
        if status != 202 or not isinstance(data, dict) or not data.get("executionId"):
            raise E2EError(f"trigger {workflow_type}/{entity_id} -> {status} {data}")
        return str(data["executionId"])


# --------------------------------------------------------------------------- airflow
class Airflow:
    """A real Airflow 3 deployment: api-server, scheduler, dag-processor, triggerer(s), and Celery
    workers when the executor (``AIRFLOW__CORE__EXECUTOR`` in ``extra_env``) is the CeleryExecutor."""

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(
        self,
        root: Path,
        db_url: str,
        emulator_url: str,
        dag_files: list[Path],
        extra_env: dict[str, str] | None = None,
    ):
        self.root = root
        self.home = root / "airflow-home"
        self.dags = self.home / "dags"
        self.logs = root / "logs"
        self.dags.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for f in dag_files:
            shutil.copy(f, self.dags / f.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, Proc] = {}
        self._token: str | None = None
        self._trigger_log_port = 0
        conn = {
            "conn_type": "smartmca",
            "host": emulator_url,
            "password": API_KEY,
            "extra": {"scopes": SCOPES},
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="8",
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="32",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__FERNET_KEY="",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db_url,
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY="e2e-secret-key-e2e-secret-key",
            AIRFLOW__API_AUTH__JWT_SECRET="e2e-jwt-secret-e2e-jwt-secret-0123456789",
            AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME="3600",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.home / "logs"),
            # Only the runs a test triggers: scheduled example DAGs never start runs by themselves.
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.5",
            AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC="2",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="300",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="8",
            AIRFLOW__TRIGGERER__CAPACITY="1000",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
            AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="120",
            AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
            AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL="600",
            AIRFLOW_CONN_SMARTMCA_DEFAULT=json.dumps(conn),
            # Every operator defers unless its DAG says otherwise; the example DAGs poll every 2 s.
            AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
            AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL="2",
            PYTHONDONTWRITEBYTECODE="1",
        )
        # A stack's own settings (e.g. the event-driven stack turns USE_JOB_SCHEDULE back on).
        env.update(extra_env or {})
        self.env = env

    # -- lifecycle ------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            [AIRFLOW, *args], env=self.env, text=True, capture_output=True, timeout=timeout, check=False
        )
        if out.returncode != 0:
            raise E2EError(f"airflow {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out.stdout

    def migrate(self) -> None:
        self.cli("db", "migrate")

    def start(self, component: str, name: str | None = None, extra_env: dict[str, str] | None = None) -> Proc:
        name = name or component
        env = dict(self.env, **(extra_env or {}))
        if component == "triggerer":
            # Each triggerer serves its trigger logs on its own port (several may run at once).
            env.setdefault("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
            # Its TriggererJob row names it: Airflow stores getpass.getuser() (LOGNAME first) as unixname.
            env["LOGNAME"] = name
        argv = [AIRFLOW, *component.split()]
        if component == "api-server":
            argv += ["--port", str(self.port), "--host", "127.0.0.1", "--workers", "1"]
        if component == "celery worker":
            # Its own Celery hostname; task logs go to the shared AIRFLOW_HOME, read from there.
            argv += ["--celery-hostname", f"{name}@%h", "--skip-serve-logs", "--without-mingle"]
        proc = Proc(name, argv, env, self.logs / f"{name}.log", cwd=self.home)
        self.procs[name] = proc
        return proc

    def start_all(self, triggerers: int = 1, celery_workers: int = 0) -> None:
        """The components, plus more triggerers (``triggerer-b``, ...) and Celery workers (``worker-a``, ...)."""
        for c in self.COMPONENTS:
            self.start(c)
        for i in range(1, triggerers):
            self.start("triggerer", name=f"triggerer-{'abcdefgh'[i]}")
        for i in range(celery_workers):
            self.start("celery worker", name=f"worker-{'abcdefgh'[i]}")
        wait_for(
            "api-server health",
            lambda: http("GET", f"{self.url}/api/v2/monitor/health", timeout=5)[0] == 200,
            180,
            interval=1,
            on_timeout=self.tails(),
        )

    def stop_all(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.stop()

    def owner(self, pid: int) -> str | None:
        """The component that ``pid`` descends from (its process, or a process it forked)."""
        leaders = {p.pid: n for n, p in self.procs.items()}
        current: int | None = pid
        while current is not None and current > 1 and current not in leaders:
            current = parent_pid(current)
        return leaders.get(current) if current is not None else None

    def check_alive(self) -> None:
        dead = [n for n, p in self.procs.items() if not p.alive() and not getattr(p, "expected_dead", False)]
        if dead:
            raise E2EError(f"components died: {dead}\n{self.tails()}")

    def tails(self, lines: int = 40) -> str:
        parts = []
        for name, p in self.procs.items():
            parts.append(f"\n----- {name} ({p.log}) last {lines} lines -----\n{p.tail(lines)}")
        return "".join(parts)

    # -- REST API -------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            status, data = http("GET", f"{self.url}/auth/token")
            if status not in (200, 201):
                raise E2EError(f"GET /auth/token -> {status} {data}")
            self._token = data["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        # Airflow 3.3.2 answers 500 to asset-event reads while a run those events created is still
        # queued (its start_date is NULL: apache/airflow#71360, fixed after 3.3.2 by #71379). The
        # run starts within seconds, so a GET answered 500 is tried again for up to 30 s.
        deadline = time.monotonic() + (30 if method == "GET" else 0)
        while True:
            status, data = http(
                method, f"{self.url}/api/v2/{path}", body, {"Authorization": f"Bearer {self.token()}"}
            )
            if status == 401:  # token expired: get a new one once
                self._token = None
                status, data = http(
                    method, f"{self.url}/api/v2/{path}", body, {"Authorization": f"Bearer {self.token()}"}
                )
            if status != 500 or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if status not in ok:
            raise E2EError(f"{method} /api/v2/{path} -> {status} {data}")
        return data

    def wait_dags(self, dag_ids: list[str], timeout: float = 240) -> None:
        def parsed() -> bool:
            data = self.api("GET", "dags?limit=100")
            have = {d["dag_id"] for d in data["dags"]}
            return set(dag_ids) <= have

        wait_for(f"DAGs {dag_ids} to be parsed", parsed, timeout, interval=2, on_timeout=self.tails())
        for d in dag_ids:
            self.api("PATCH", f"dags/{d}", {"is_paused": False})

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "importErrors")["import_errors"])

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None
    ) -> str:
        body = {"logical_date": logical_date, "conf": conf or {}}
        data = self.api("POST", f"dags/{dag_id}/dagRuns", body)
        return str(data["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (the API answers at most 100 a page)."""
        tis: list[dict[str, Any]] = []
        while True:
            data = self.api(
                "GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(tis)}"
            )
            page = list(data["task_instances"])
            tis += page
            if not page or len(tis) >= int(data["total_entries"]):
                return tis

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        data = self.api(
            "GET",
            f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}&deserialize=true&stringify=false",
        )
        return data["value"]

    def xcom_key(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        data = self.api(
            "GET",
            f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}&deserialize=true&stringify=false",
        )
        return data["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        _status, data = http(
            "GET",
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
            "?full_content=true",
            headers={"Authorization": f"Bearer {self.token()}"},
        )
        return json.dumps(data) if not isinstance(data, str) else data

    def asset_id(self, uri: str) -> int:
        """The id of the asset with this URI (it exists once its DAG is parsed)."""
        data = self.api("GET", f"assets?uri_pattern={urllib.parse.quote(uri)}&limit=100")
        ids = [a["id"] for a in data["assets"] if a["uri"] == uri]
        if len(ids) != 1:
            raise E2EError(f"asset {uri}: {len(ids)} matches in {data}")
        return int(ids[0])

    def asset_events(self, asset_id: int) -> list[dict[str, Any]]:
        """Every event of an asset, oldest first."""
        events: list[dict[str, Any]] = []
        while True:
            data = self.api(
                "GET", f"assets/events?asset_id={asset_id}&order_by=timestamp&limit=100&offset={len(events)}"
            )
            page = list(data["asset_events"])
            events += page
            if not page or len(events) >= int(data["total_entries"]):
                return events

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of a DAG, oldest first."""
        runs: list[dict[str, Any]] = []
        while True:
            data = self.api("GET", f"dags/{dag_id}/dagRuns?order_by=run_after&limit=100&offset={len(runs)}")
            page = list(data["dag_runs"])
            runs += page
            if not page or len(runs) >= int(data["total_entries"]):
                return runs

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events that triggered (and were consumed by) a run."""
        return list(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"])

    def wait_runs(
        self,
        runs: list[tuple[str, str]],
        timeout: float,
        observer: RunObserver | None = None,
        until: Callable[[], bool] | None = None,
    ) -> dict[tuple[str, str], str]:
        """Poll run and task states until every run is terminal (or ``until()`` is true)."""
        deadline = time.monotonic() + timeout
        states: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            for dag_id, run_id in runs:
                states[(dag_id, run_id)] = self.run_state(dag_id, run_id)
                if observer is not None:
                    observer.observe(dag_id, run_id, self.task_instances(dag_id, run_id))
            if until is not None and until():
                return states
            if until is None and all(s in TERMINAL_RUN_STATES for s in states.values()):
                return states
            self.check_alive()
            time.sleep(1.0)
        raise E2EError(f"runs not finished after {timeout:.0f}s: {states}")


class RunObserver:
    """Records every task state seen while polling, when, and whether a task process existed then."""

    def __init__(self, scan_processes: bool = False):
        self.scan_processes = scan_processes
        # (dag_id, run_id, task_id, map_index) -> list of (time, state)
        self.timeline: dict[tuple[str, str, str, int], list[tuple[float, str | None]]] = {}
        self.ti_ids: dict[tuple[str, str, str, int], str] = {}
        # task keys that had a live task process while observed deferred (twice in a row)
        self.deferred_with_process: set[tuple[str, str, str, int]] = set()

    def observe(self, dag_id: str, run_id: str, tis: list[dict[str, Any]]) -> None:
        now = time.time()
        for ti in tis:
            key = (dag_id, run_id, ti["task_id"], int(ti.get("map_index", -1)))
            self.ti_ids[key] = ti["id"]
            line = self.timeline.setdefault(key, [])
            prev = line[-1][1] if line else None
            line.append((now, ti["state"]))
            both_deferred = ti["state"] == "deferred" and prev == "deferred"
            if self.scan_processes and both_deferred and task_process_pids(ti["id"]):
                self.deferred_with_process.add(key)

    def seen(self, state: str) -> set[tuple[str, str, str, int]]:
        return {k for k, line in self.timeline.items() if any(s == state for _, s in line)}

    def deferred_window(self, key: tuple[str, str, str, int]) -> tuple[float, float] | None:
        times = [t for t, s in self.timeline.get(key, []) if s == "deferred"]
        return (min(times), max(times)) if times else None


def make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="smartmca-e2e-"))
    (root / "logs").mkdir()
    return root
