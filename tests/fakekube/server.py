"""The HTTP layer and `FakeKube`, the object tests hold: a server on 127.0.0.1 in a background thread
plus the test-control API (seeding, reading, faults, request log)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakekube import builders, errors
from tests.fakekube.api import Api, Reply, Request, WatchStream
from tests.fakekube.cluster import Cluster
from tests.fakekube.conversion import to_served
from tests.fakekube.faults import Faults
from tests.fakekube.requestlog import RequestLog, RequestRecord
from tests.fakekube.resources import lookup
from tests.fakekube.store import Obj, Store

_SEEDED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeKube, address: tuple[str, int]) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.handler_threads: set[threading.Thread] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request (a killed process, a client-side timeout) is routine;
        # anything else is a bug in the fake and keeps the standard traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle's algorithm the body then waits
        # for the client's delayed ACK (40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
            self.server.handler_threads.add(threading.current_thread())

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
            self.server.handler_threads.discard(threading.current_thread())

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr access logging

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        arrived = time.time()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = self._read_body()
        request = Request(method, url.path, query, content_type, self.headers.get("Accept", ""), body)

        agent = self.headers.get("User-Agent", "")

        def log(status: int) -> None:
            record = RequestRecord(method, url.path, query, content_type, _logged_body(body), status,
                                   arrived, agent, time.time())  # fmt: skip
            fake._log.append(record)

        delay = fake._faults.delay_for(method, url.path)
        if delay and fake._stopping.wait(delay):
            self.close_connection = True
            return
        if delay and self._client_gone():
            # As the API server cancels a request whose client hung up while it waited (in a
            # priority-and-fairness queue, an admission webhook): it is never carried out.
            log(0)
            self.close_connection = True
            return
        failure = fake._faults.failure_for(method, url.path)
        try:
            if failure is not None:
                raise failure
            result = fake._api.handle(request)
        except errors.ApiError as exc:
            log(exc.code)
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
            self._send_json(exc.code, exc.status(), headers)
            return
        except Exception as exc:  # a bug in the fake must still answer, or the client hangs
            log(500)
            self._send_json(500, errors.ApiError(500, f"fakekube internal error: {exc!r}").status(), {})
            raise
        if isinstance(result, Reply):
            log(result.status)
            self._send_json(result.status, result.body, result.headers)
        else:
            log(200)
            self._stream(result)

    def _send_json(self, status: int, body: Obj, headers: Mapping[str, str]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a client-side timeout, say); nobody is left to tell
            self.close_connection = True

    def _stream(self, events: WatchStream) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in events:
                if event is None:
                    if self._client_gone():
                        self.close_connection = True
                        return
                    continue
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            events.close()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def _logged_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", errors="replace")


class FakeKube:
    """A Kubernetes API server good enough for the official client and kubectl, run in-process."""

    def __init__(self, *, auto_ready: bool = True, history_limit: int = 1000, port: int = 0) -> None:
        self._store = Store(history_limit)
        self._cluster = Cluster(self._store, auto_ready=auto_ready)
        self._api = Api(self._cluster, self._store, lambda: f"127.0.0.1:{self.port}")
        self._faults = Faults()
        self._log = RequestLog()
        self._stopping = threading.Event()
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name in _SEEDED_NAMESPACES:
            self._cluster.ensure_namespace(name)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeKube:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self, ("127.0.0.1", self._requested_port))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fakekube",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._store.close()
        httpd.shutdown()
        with httpd.connections_lock:
            connections, threads = list(httpd.connections), list(httpd.handler_threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=2)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake API server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """A kubeconfig (JSON, which is YAML) that kubectl and `load_kube_config` both accept."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": {"token": "fakekube-token"}}],
            "contexts": [
                {
                    "name": "fakekube",
                    "context": {"cluster": "fakekube", "user": "fakekube", "namespace": namespace},
                }
            ],
            "current-context": "fakekube",
            "preferences": {},
        }
        target = Path(path)
        target.write_text(json.dumps(config, indent=2) + "\n")
        return target

    # --- objects --------------------------------------------------------------------------------

    def put_object(self, obj: Obj) -> Obj:
        """Create or overwrite an object as given, status included, without validation; returns it as
        stored. A Deployment or StatefulSet then gets the simulated controller's status, as any write
        to one does."""
        return self._cluster.put(obj)

    def get_object(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        """The object by kind (or plural/short name), or None; HPAs in autoscaling/v2 shape."""
        resource = lookup(kind)
        ns = (namespace or "") if resource.namespaced else ""
        obj = self._store.get(resource.storage, ns, name)
        return self._served(kind, obj) if obj is not None else None

    def list_objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return [self._served(kind, obj) for obj in self._store.list(lookup(kind).storage, namespace)]

    def delete_object(self, kind: str, namespace: str | None, name: str) -> bool:
        resource = lookup(kind)
        ns = (namespace or "") if resource.namespaced else ""
        return self._store.remove(resource.storage, ns, name) is not None

    def _served(self, kind: str, obj: Obj) -> Obj:
        return to_served(lookup(kind), obj)

    def add_namespace(self, name: str) -> Obj:
        self._cluster.ensure_namespace(name)
        namespace = self.get_object("Namespace", None, name)
        assert namespace is not None
        return namespace

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        cpu_request: str | None = "500m",
        memory_request: str | None = "256Mi",
        image: str = "registry.local/app:1.0",
        kind: str = "Deployment",
    ) -> Obj:
        """A Deployment (or another `kind` of pod owner) selecting pods by `app=<name>` (plus
        `labels` on it and its pods)."""
        return self.put_object(
            builders.deployment(
                namespace,
                name,
                replicas=replicas,
                labels=labels,
                annotations=annotations,
                cpu_request=cpu_request,
                memory_request=memory_request,
                image=image,
                kind=kind,
            )
        )

    def add_statefulset(self, namespace: str, name: str, **options: Any) -> Obj:
        """A StatefulSet selecting pods by `app=<name>`, with `add_deployment`'s options."""
        return self.add_deployment(namespace, name, kind="StatefulSet", **options)

    def add_hpa(
        self,
        namespace: str,
        name: str,
        deployment: str,
        *,
        min_replicas: int = 1,
        max_replicas: int = 10,
        cpu_utilization: int = 80,
        current_replicas: int | None = None,
        target_kind: str = "Deployment",
    ) -> Obj:
        """An autoscaling/v2 HPA on a CPU-utilisation target scaling the `target_kind` named
        `deployment`; status as a settled HPA controller's (current replicas default to the
        target's spec.replicas)."""
        if current_replicas is None:
            target = self.get_object(target_kind, namespace, deployment)
            current_replicas = target["spec"].get("replicas") if target is not None else None
        return self.put_object(
            builders.hpa(
                namespace,
                name,
                deployment,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                cpu_utilization=cpu_utilization,
                current_replicas=current_replicas,
                target_kind=target_kind,
            )
        )

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        ready: bool = True,
        created_at: datetime | None = None,
        ready_at: datetime | None = None,
        phase: str = "Running",
        owner: str | None = None,
        owner_kind: str = "Deployment",
    ) -> Obj:
        """A pod whose Ready condition turned True at `ready_at` (or False, if not `ready`).

        `owner` names a workload (of `owner_kind`) whose pod labels the pod gets, so its selector
        finds the pod."""
        pod_labels = dict(labels or {})
        if owner is not None:
            workload = self.get_object(owner_kind, namespace, owner)
            if workload is None:
                raise KeyError(f"no {owner_kind.lower()} {namespace}/{owner}")
            pod_labels = {**workload["spec"]["template"]["metadata"].get("labels", {}), **pod_labels}
        return self.put_object(
            builders.pod(
                namespace,
                name,
                labels=pod_labels,
                ready=ready,
                created_at=created_at,
                ready_at=ready_at,
                phase=phase,
            )
        )

    # --- the simulated deployment and statefulset controllers ------------------------------------

    @property
    def auto_ready(self) -> bool:
        """True: a workload's pods are ready as soon as spec.replicas changes; False: see set_ready."""
        return self._cluster.auto_ready

    @auto_ready.setter
    def auto_ready(self, value: bool) -> None:
        self._cluster.auto_ready = value

    def set_ready(self, namespace: str, name: str, ready_replicas: int, kind: str = "Deployment") -> Obj:
        """Report `ready_replicas` of a workload's pods as ready (capped at spec.replicas); a
        StatefulSet's rolling update ends once all of them are."""
        if kind == "StatefulSet":
            workload = self._cluster.reconcile_statefulset(namespace, name, ready=ready_replicas)
        else:
            workload = self._cluster.reconcile_deployment(namespace, name, ready=ready_replicas)
        if workload is None:
            raise KeyError(f"no {kind.lower()} {namespace}/{name}")
        return workload

    # --- watches and versions -------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return str(self._store.rv)

    def compact(self) -> None:
        """Forget the event history, so a watch from any older resourceVersion gets 410 Gone."""
        self._store.compact()

    def drop_watches(self) -> None:
        """End every open watch stream now (cleanly, as a server-side timeout does)."""
        self._store.drop_watches()

    def wait_for_watches(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least `count` watch streams are open; False on timeout."""
        return self._store.wait_for_watchers(count, timeout)

    @property
    def open_watches(self) -> int:
        return self._store.watchers

    # --- request log ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first."""
        return self._log.records()

    def clear_log(self) -> None:
        self._log.clear()

    # --- faults ---------------------------------------------------------------------------------

    def inject(
        self,
        method: str | None = None,
        path_regex: str | None = None,
        status: int = 503,
        times: int | None = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` matching requests (None: all, until heal) with `status`."""
        self._faults.inject(method, path_regex, status, times, retry_after)

    def slow(self, path_regex: str | None, seconds: float, times: int | None = 1) -> None:
        """Delay the next `times` matching requests by `seconds` before answering."""
        self._faults.slow(path_regex, seconds, times)

    def fail_all(self, status: int = 503) -> None:
        """An outage: every request fails with `status` and open watches end, until heal()."""
        self._faults.fail_all(status)
        self._store.drop_watches()

    def heal(self) -> None:
        """End an outage and forget every injected failure and delay."""
        self._faults.heal()
