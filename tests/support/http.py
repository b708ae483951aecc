"""Peers for the sender's HTTP tests: a private CA, a scripted answerer, a CONNECT proxy.

All listen on 127.0.0.1, port 0, parse requests with :mod:`http.server`, and
can speak TLS with a certificate from :class:`PrivateCA`, which the openssl
command makes (CI has it; without it these tests fail, they do not skip).
"""
from __future__ import annotations

import base64
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

#: How long a stalling script keeps at it if the client never hangs up.
STALL_LIMIT = 30.0


class PrivateCA:
    """A CA of our own and a certificate from it for ``localhost`` and ``127.0.0.1``."""

    def __init__(self, directory: Path, name: str = "Test CA") -> None:
        if shutil.which("openssl") is None:
            raise AssertionError("the openssl command is needed to make test certificates")
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        ca_key = directory / "ca.key"
        csr = directory / "server.csr"
        extensions = directory / "server.ext"
        extensions.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca_file, "-days", "2",
                      "-subj", f"/CN={name}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", *ec, "-keyout", self.key_file, "-out", csr,
                      "-subj", "/CN=localhost")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", ca_key,
                      "-CAcreateserial", "-out", self.cert_file, "-days", "2",
                      "-extfile", extensions)

    @staticmethod
    def _openssl(*args: Any) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def serve_tls(server: ThreadingHTTPServer, context: ssl.SSLContext) -> None:
    """Make a server (not yet serving) speak TLS; the handshake runs in each connection's thread."""
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )


class _Handshaking(BaseHTTPRequestHandler):
    """Finishes a deferred TLS handshake before reading the request."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


#: A script writes one raw answer, at any pace, to the connection's socket.
Script = Callable[[socket.socket], None]


def answer(raw: bytes) -> Script:
    """A script that writes ``raw`` at once."""
    return lambda conn: conn.sendall(raw)


def trickle(raw: bytes, interval: float) -> Script:
    """A script that writes ``raw`` one byte every ``interval`` seconds."""

    def write(conn: socket.socket) -> None:
        for i in range(len(raw)):
            conn.sendall(raw[i : i + 1])
            time.sleep(interval)

    return write


def endless(head: bytes, then: bytes, interval: float) -> Script:
    """A script that writes ``head``, then ``then`` every ``interval`` seconds until cut off."""

    def write(conn: socket.socket) -> None:
        conn.sendall(head)
        stop = time.monotonic() + STALL_LIMIT
        while time.monotonic() < stop:
            conn.sendall(then)
            time.sleep(interval)

    return write


class _LocalServer:
    """An HTTP server on 127.0.0.1, port 0, serving from a daemon thread (over TLS with
    ``tls``); its handler finds this object as ``self.server.owner``."""

    def _serve(
        self, handler: Type[BaseHTTPRequestHandler], tls: Optional[ssl.SSLContext]
    ) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        if tls is not None:
            serve_tls(self.server, tls)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedServer(_LocalServer):
    """Reads each POST whole (``http.server``), then answers with the next script.

    Connections are kept alive between answers; a script that raises (the
    client hung up) ends its connection.
    """

    def __init__(self, scripts: Sequence[Script], tls: Optional[ssl.SSLContext] = None) -> None:
        self.scripts = list(scripts)
        self.requests: List[Tuple[str, List[Tuple[str, str]], bytes]] = []
        self.client_ports: List[int] = []
        self.lock = threading.Lock()
        self._serve(_ScriptedHandler, tls)


class _ScriptedHandler(_Handshaking):
    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        scripted: ScriptedServer = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with scripted.lock:
            scripted.requests.append((self.requestline, list(self.headers.items()), body))
            scripted.client_ports.append(self.client_address[1])
            script = scripted.scripts.pop(0) if scripted.scripts else None
        if script is None:
            self.close_connection = True
            return
        try:
            script(self.connection)
        except OSError:
            self.close_connection = True


class ConnectProxy(_LocalServer):
    """A proxy that only tunnels (``CONNECT``), for a client that shows Basic credentials.

    With ``tls`` the proxy itself is reached over TLS (an ``https://`` proxy).
    :attr:`seen` holds each CONNECT's target and ``Proxy-Authorization``.
    """

    def __init__(self, user: str, password: str, tls: Optional[ssl.SSLContext] = None) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.expected = f"Basic {token}"
        self.seen: List[Tuple[str, Optional[str]]] = []
        self._serve(_ConnectHandler, tls)


class _ConnectHandler(_Handshaking):
    def do_CONNECT(self) -> None:  # noqa: N802 - stdlib name
        proxy: ConnectProxy = self.server.owner  # type: ignore[attr-defined]
        credentials = self.headers.get("Proxy-Authorization")
        proxy.seen.append((self.path, credentials))
        if credentials != proxy.expected:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        _relay(self.connection, upstream)
        self.close_connection = True


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with upstream:
        while True:
            ready = [client] if isinstance(client, ssl.SSLSocket) and client.pending() else []
            if not ready:
                ready, _, _ = select.select([client, upstream], [], [], 10)
                if not ready:
                    return
            for source in ready:
                target = upstream if source is client else client
                try:
                    data = source.recv(65536)
                    if not data:
                        return
                    target.sendall(data)
                except OSError:
                    return
