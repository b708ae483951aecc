"""The sender's HTTP/1.1 connection against a scripted peer: every framing of an answer."""
from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Iterator, List, Tuple

import pytest

from publisher.http11 import Connection, ProtocolError

HEAD = b"POST /v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"


class Peer:
    """A TCP server on port 0 that answers each request with the next scripted bytes."""

    def __init__(self, answers: List[bytes], close_after: bool = False) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.requests: List[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while self.answers:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                data = rest[length:]
                conn.sendall(self.answers.pop(0))
            if self.close_after:
                conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def one_shot(answer: bytes, hang_up: bool = False) -> socket.socket:
    """A listener whose first connection gets ``answer`` after the first bytes arrive."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
            if hang_up:
                conn.shutdown(socket.SHUT_WR)
                time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.fixture
def peer_for() -> Iterator:
    peers: List[Peer] = []

    def make(*answers: bytes, close_after: bool = False) -> Tuple[Peer, Connection]:
        peer = Peer(list(answers), close_after)
        peers.append(peer)
        return peer, Connection("127.0.0.1", peer.port, timeout=5)

    yield make
    for peer in peers:
        peer.close()


def test_content_length_answers_on_one_connection(peer_for):
    """Two requests, two Content-Length answers, one connection; the body is sent whole."""
    peer, conn = peer_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 5\r\nRetry-After: 7\r\n\r\nbad!!",
    )
    first, keep = conn.request(HEAD, b"body")
    assert (200, "OK", b"", True) == (first.status, first.reason, first.body, keep)
    second, keep = conn.request(HEAD, b"more")
    assert (422, b"bad!!", "7", True) == (second.status, second.body,
                                         second.header("retry-after"), keep)
    assert [HEAD + b"body", HEAD + b"more"] == peer.requests
    conn.close()


def test_chunked_answer_with_trailer(peer_for):
    """A chunked body is put together; the connection stays usable."""
    _, conn = peer_for(
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nbad \r\n6\r\nbatch!\r\n0\r\nX-Trailer: y\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    )
    answer, keep = conn.request(HEAD, b"body")
    assert (400, b"bad batch!", True) == (answer.status, answer.body, keep)
    answer, keep = conn.request(HEAD, b"body")
    assert (204, b"", True) == (answer.status, answer.body, keep)
    conn.close()


def test_interim_100_continue_is_skipped(peer_for):
    _, conn = peer_for(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    answer, keep = conn.request(HEAD, b"body")
    assert (200, b"ok", True) == (answer.status, answer.body, keep)
    conn.close()


def test_close_delimited_and_connection_close_answers_end_the_connection(peer_for):
    """HTTP/1.0 without keep-alive, or Connection: close: read to the end, then reconnect."""
    _, conn = peer_for(b"HTTP/1.0 503 Busy\r\n\r\ntry later", close_after=True)
    answer, keep = conn.request(HEAD, b"body")
    assert (503, b"try later", False) == (answer.status, answer.body, keep)
    conn.close()
    _, conn = peer_for(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    answer, keep = conn.request(HEAD, b"body")
    assert (200, False) == (answer.status, keep)
    conn.close()


def test_connection_close_among_other_tokens_ends_the_connection(peer_for):
    _, conn = peer_for(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"
    )
    answer, keep = conn.request(HEAD, b"body")
    assert (200, False) == (answer.status, keep)
    conn.close()


def test_an_answer_before_the_whole_body_is_read(tmp_path):
    """A collector that answers 413 and hangs up mid-body: the caller gets the 413."""
    listener = one_shot(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig", hang_up=True)
    conn = Connection("127.0.0.1", listener.getsockname()[1], timeout=5)
    head = b"POST /v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 33554432\r\n\r\n"
    answer, keep = conn.request(head, bytes(32 << 20))
    assert (413, b"big", False) == (answer.status, answer.body, keep)
    conn.close()
    listener.close()


@pytest.mark.parametrize("answer, message", [
    (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 2\xc2\xb200 OK\r\n\r\n", "not an HTTP/1.x status line"),
])
def test_garbage_answers_raise_protocol_error(peer_for, answer: bytes, message: str):
    _, conn = peer_for(answer)
    with pytest.raises(ProtocolError, match=message):
        conn.request(HEAD, b"body")
    conn.close()


def test_peer_hanging_up_before_answering_is_an_error(peer_for):
    _, conn = peer_for(b"HTTP/1.1 200 OK\r\nContent-", close_after=True)
    with pytest.raises(ProtocolError, match="closed the connection before answering"):
        conn.request(HEAD, b"body")
    conn.close()


def test_idle_closed_sees_a_hang_up(peer_for):
    """A connection the peer closed while idle is noticed before it is reused."""
    _, conn = peer_for(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close_after=True)
    conn.request(HEAD, b"body")
    for _ in range(100):
        if conn.idle_closed():
            break
        time.sleep(0.02)
    assert conn.idle_closed()
    conn.close()


def test_connect_tunnel_refused_by_the_proxy():
    """An https collector through a proxy that refuses CONNECT fails with the proxy's answer."""
    import ssl

    proxy = one_shot(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ProtocolError, match="proxy refused CONNECT: 403 Forbidden"):
        Connection("collector.example", 443, 5, ssl.create_default_context(),
                   via=("127.0.0.1", proxy.getsockname()[1]))
    proxy.close()


def test_tls_to_a_local_server(tmp_path):
    """An https collector: the POST goes over TLS, checked against the server's certificate."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    got: List[bytes] = []

    def serve() -> None:
        raw, _ = listener.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as conn:
            data = b""
            while not data.endswith(b"body"):
                data += conn.recv(65536)
            got.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    conn = Connection("localhost", listener.getsockname()[1], 5, client_ctx)
    answer, keep = conn.request(HEAD, b"body")
    assert (200, b"ok", True) == (answer.status, answer.body, keep)
    assert [HEAD + b"body"] == got
    conn.close()
    listener.close()
