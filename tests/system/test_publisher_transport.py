"""The sender's HTTP (requests) against real local peers: odd answers, proxies, TLS, deadline."""
from __future__ import annotations

import base64
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from baseplate_events.mqueue.posix import MessageQueue
from publisher.send.dead_letters import DeadLetters
from publisher.metrics.counters import Metrics
from publisher.send.post import Answer, Poster, sign

from tests.support.collector import LocalCollector
from tests.support.http import (
    ConnectProxy,
    PrivateCA,
    ScriptedServer,
    Script,
    answer,
    endless,
    serve_tls,
    trickle,
)
from tests.support.publisher import (
    ROOT,
    SECRET,
    config_file,
    make_event,
    put_all,
    uuids_of,
)

pytestmark = pytest.mark.system

BODY = b"[" + make_event(0) + b"]"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return PrivateCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return PrivateCA(tmp_path_factory.mktemp("rogue"), name="Someone Else")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without proxies (and without the CA bundle overrides requests reads)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def servers() -> Iterator[List]:
    """Peers made by a test, closed on teardown."""
    made: List = []
    yield made
    for peer in made:
        peer.close() if hasattr(peer, "close") else peer.stop()


def scripted(servers: List, *scripts: Script, tls=None) -> ScriptedServer:
    server = ScriptedServer(scripts, tls)
    servers.append(server)
    return server


def sender_for(url: str, timeout: float = 5.0, ca_file=None) -> Poster:
    return Poster(url, "TestKey", SECRET, timeout=timeout, gzip_level=6, metrics=Metrics(),
                  ca_file=None if ca_file is None else str(ca_file))


def tls_collector(servers: List, ca: PrivateCA) -> LocalCollector:
    collector = LocalCollector(SECRET, version="2j")
    serve_tls(collector.server, ca.server_context())
    servers.append(collector.start())
    return collector


# -- the request on the wire -------------------------------------------------------


def test_the_request_head_is_what_baseplate_sends(servers):
    """Request line and headers, in order, exactly as the hand-written client sent them."""
    server = scripted(servers, answer(OK))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    assert sender.post(BODY, 1).ok
    sender.close()
    [(line, headers, body)] = server.requests
    date = dict(headers)["Date"]
    assert ("POST /v2j HTTP/1.1", [
        ("Host", f"127.0.0.1:{server.port}"),
        ("User-Agent", "baseplate-events-publisher/0.1"),
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Date", date),
        ("Content-Length", str(len(body))),
        ("X-Signature", sign("TestKey", SECRET, BODY)),
    ]) == (line, headers)
    assert date.endswith(" GMT")
    assert BODY == gzip.decompress(body)


# -- answers the hand-written client refused ----------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", Answer(200, "")),
    (b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nnope",
     Answer(422, "nope")),
    (b"HTTP/1.1 503 Busy\r\nRetry-After:\r\n 7\r\nContent-Length: 4\r\n\r\nbusy",
     Answer(503, "busy", 7.0)),
    (b"HTTP/1.1 200 OK\r\nX-Note: one\r\n two\r\nContent-Length: 0\r\n\r\n", Answer(200, "")),
    (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", Answer(200, "")),
    (b"HTTP/1.1 400 Bad Request\nContent-Length: 3\n\nbad", Answer(400, "bad")),
], ids=["twice-equal-content-length-200", "twice-equal-content-length-422", "folded-retry-after",
        "folded-header", "bare-lf-200", "bare-lf-400"])
def test_lenient_answers_are_answers(servers, raw: bytes, expected: Answer):
    """Equal Content-Lengths twice, a folded header, bare LFs: a normal answer, one POST."""
    server = scripted(servers, answer(raw))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    assert expected == sender.post(BODY, 1)
    sender.close()
    assert (1, 0) == (len(server.requests), sender.metrics.totals.get("error.io", 0))


def test_answers_keep_one_connection(servers):
    """Answers with every framing leave the connection open for the next POST."""
    server = scripted(
        servers,
        answer(OK),
        answer(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;x=1\r\nbad \r\n6\r\nbatch!\r\n0\r\nX-Trailer: y\r\n\r\n"),
        answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
    )
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    answers = [sender.post(BODY, 1) for _ in range(3)]
    sender.close()
    assert [Answer(200, ""), Answer(400, "bad batch!"), Answer(204, "")] == answers
    assert (1, 1) == (len(set(server.client_ports)), sender.connections)


def test_interim_answers_are_read_past_on_the_same_connection(servers):
    """A 103 before the final answer: the final answer counts, the connection is kept."""
    server = scripted(
        servers,
        answer(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
               b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 4\r\n\r\nnope"),
        answer(OK),
    )
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    answers = [sender.post(BODY, 1) for _ in range(2)]
    sender.close()
    assert [Answer(422, "nope"), Answer(200, "")] == answers
    assert 1 == len(set(server.client_ports))


def test_a_close_delimited_answer_ends_the_connection(servers):
    """An HTTP/1.0 answer without a length is read to the end; the next POST reconnects."""
    server = scripted(servers, answer(b"HTTP/1.0 503 Busy\r\n\r\ntry later"), answer(OK))
    server.scripts[0] = _then_hang_up(server.scripts[0])
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    assert Answer(503, "try later") == sender.post(BODY, 1)
    assert Answer(200, "") == sender.post(BODY, 1)
    sender.close()
    assert 2 == len(set(server.client_ports))


def _then_hang_up(script: Script) -> Script:
    def write(conn) -> None:
        script(conn)
        raise BrokenPipeError("hang up")  # ScriptedServer ends the connection

    return write


# -- the whole POST within collector.timeout -------------------------------------------


DEADLINE = "no complete answer within collector.timeout (1s)"


@pytest.mark.parametrize("script", [
    trickle(OK, 0.25),
    endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.25),
    endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", b"X-More: y\r\n", 0.25),
], ids=["a-byte-at-a-time", "endless-100-continue", "endless-chunked-trailers"])
def test_an_answer_that_never_ends_is_cut_at_the_deadline(servers, script: Script):
    """Bytes come faster than the per-read timeout but never finish: an I/O error at 1 s."""
    server = scripted(servers, script)
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j", timeout=1.0)
    assert Answer(None, DEADLINE) == sender.post(BODY, 1)
    sender.close()
    assert 1 == sender.metrics.totals["error.io"]


def test_an_answer_slower_than_the_timeout_is_the_same_overrun(servers):
    """No byte at all within collector.timeout: the same message as a cut, an I/O error."""

    def late(conn: socket.socket) -> None:
        time.sleep(1.5)
        conn.sendall(OK)

    server = scripted(servers, late)
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j", timeout=0.5)
    assert Answer(None, "no complete answer within collector.timeout (0.5s)") == sender.post(
        BODY, 1)
    sender.close()
    assert 1 == sender.metrics.totals["error.io"]


def test_a_connection_not_taken_within_the_timeout(servers):
    """A listener whose backlog is full never completes the handshake: said as such."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # Linux drops SYNs once the accept queue (backlog + 1) is full
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    sender = sender_for(f"http://127.0.0.1:{port}/v2j", timeout=0.5)
    result = sender.post(BODY, 1)
    sender.close()
    for sock in (*fillers, listener):
        sock.close()
    assert Answer(None, "no connection within collector.timeout (0.5s)") == result


def test_the_deadline_cuts_a_kept_alive_connection_and_the_next_post_reconnects(servers):
    """A stall on a reused connection is cut too; the following POST gets a new one."""
    server = scripted(servers, answer(OK), endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.25),
                      answer(OK))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j", timeout=1.0)
    answers = [sender.post(BODY, 1) for _ in range(3)]
    sender.close()
    assert [Answer(200, ""), Answer(None, DEADLINE), Answer(200, "")] == answers
    assert [1, 1, 2] == [len(set(server.client_ports[: i + 1])) for i in range(3)]


def test_a_trickled_tls_handshake_is_cut_at_the_deadline(ca: PrivateCA):
    """A server that answers the ClientHello a byte at a time: an I/O error at 1 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    record = b"\x16\x03\x03\x00\x40" + bytes(64)  # a handshake record, 69 bytes

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                trickle(record, 0.25)(conn)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    sender = sender_for(f"https://localhost:{port}/v2j", timeout=1.0, ca_file=ca.ca_file)
    assert Answer(None, DEADLINE) == sender.post(BODY, 1)
    sender.close()
    listener.close()


# -- TLS ------------------------------------------------------------------------------


def test_tls_with_a_private_ca(servers, ca: PrivateCA):
    """collector.ca_file: the batch goes over TLS to a collector whose CA is ours."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    sender = sender_for(f"https://localhost:{port}/v2j", ca_file=ca.ca_file)
    assert Answer(200, "") == sender.post(BODY, 1)
    sender.close()
    assert ([], [BODY]) == (collector.problems, [r.body for r in collector.received])


def test_tls_is_verified_without_a_ca_file(servers, ca: PrivateCA, monkeypatch):
    """Without collector.ca_file an unknown CA is refused, even with CURL_CA_BUNDLE set empty."""
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    sender = sender_for(f"https://localhost:{port}/v2j")
    result = sender.post(BODY, 1)
    sender.close()
    assert (None, True) == (result.status, result.reason.startswith(
        "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    assert ([], 1) == (collector.received, sender.metrics.totals["error.io"])


def test_tls_with_another_ca_is_refused(servers, ca: PrivateCA, rogue_ca: PrivateCA):
    """A collector whose certificate is not from collector.ca_file's CA gets nothing."""
    collector = tls_collector(servers, rogue_ca)
    port = collector.server.server_address[1]
    sender = sender_for(f"https://localhost:{port}/v2j", ca_file=ca.ca_file)
    result = sender.post(BODY, 1)
    sender.close()
    assert (None, []) == (result.status, collector.received)
    assert "certificate verify failed" in result.reason


# -- proxies --------------------------------------------------------------------------


def test_credentials_in_https_proxy_go_in_the_connect(servers, ca: PrivateCA, monkeypatch):
    """https_proxy=http://user:pass@host: CONNECT carries them; the batch arrives through it."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    proxy = ConnectProxy("events", "p@ss:word")
    servers.append(proxy)
    monkeypatch.setenv("https_proxy", f"http://events:p%40ss%3Aword@127.0.0.1:{proxy.port}")
    sender = sender_for(f"https://localhost:{port}/v2j", ca_file=ca.ca_file)
    assert Answer(200, "") == sender.post(BODY, 1)
    sender.close()
    token = base64.b64encode(b"events:p@ss:word").decode()
    assert [(f"localhost:{port}", f"Basic {token}")] == proxy.seen
    assert [BODY] == [r.body for r in collector.received]


def test_the_proxy_is_logged_without_its_credentials(monkeypatch, caplog):
    """The proxy taken from the environment is logged once, its password left out."""
    monkeypatch.setenv("https_proxy", "http://events:hunter2@proxy.example:3128")
    with caplog.at_level("INFO", logger="publisher.transport"):
        sender = sender_for("https://collector.example/v2")
    sender.close()
    assert ["posting to https://collector.example/v2 through the proxy "
            "http://proxy.example:3128 (from the environment)"] == caplog.messages


def test_wrong_proxy_credentials_are_an_io_error(servers, ca: PrivateCA, monkeypatch):
    """A proxy answering 407 to CONNECT: nothing sent, an I/O error to retry."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    proxy = ConnectProxy("events", "secret")
    servers.append(proxy)
    monkeypatch.setenv("https_proxy", f"http://events:wrong@127.0.0.1:{proxy.port}")
    sender = sender_for(f"https://localhost:{port}/v2j", ca_file=ca.ca_file)
    result = sender.post(BODY, 1)
    sender.close()
    assert (None, "OSError: Tunnel connection failed: 407 Proxy Authentication Required") == (
        result.status, result.reason)
    assert ([], 1) == (collector.received, sender.metrics.totals["error.io"])


def test_an_https_proxy_is_spoken_to_over_tls(servers, ca: PrivateCA, monkeypatch):
    """https_proxy=https://...: TLS to the proxy, CONNECT inside, TLS to the collector within."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    proxy = ConnectProxy("events", "secret", tls=ca.server_context())
    servers.append(proxy)
    monkeypatch.setenv("https_proxy", f"https://events:secret@localhost:{proxy.port}")
    sender = sender_for(f"https://localhost:{port}/v2j", ca_file=ca.ca_file)
    assert Answer(200, "") == sender.post(BODY, 1)
    sender.close()
    assert [f"localhost:{port}"] == [target for target, _ in proxy.seen]
    assert [BODY] == [r.body for r in collector.received]


def test_an_https_proxy_with_an_unknown_certificate_is_refused(
    servers, ca: PrivateCA, rogue_ca: PrivateCA, monkeypatch
):
    """The proxy's certificate is checked like the collector's: a stranger's gets no CONNECT."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    proxy = ConnectProxy("events", "secret", tls=rogue_ca.server_context())
    servers.append(proxy)
    monkeypatch.setenv("https_proxy", f"https://events:secret@localhost:{proxy.port}")
    sender = sender_for(f"https://localhost:{port}/v2j", ca_file=ca.ca_file)
    result = sender.post(BODY, 1)
    sender.close()
    assert (None, [], []) == (result.status, proxy.seen, collector.received)
    assert "certificate verify failed" in result.reason


def test_an_https_proxy_for_a_plain_http_collector_is_checked_too(
    servers, ca: PrivateCA, rogue_ca: PrivateCA, monkeypatch
):
    """http_proxy=https://...: the proxy's certificate is checked though the collector is http."""
    server = scripted(servers, answer(OK))
    proxy = ConnectProxy("events", "secret", tls=rogue_ca.server_context())
    servers.append(proxy)
    monkeypatch.setenv("http_proxy", f"https://events:secret@localhost:{proxy.port}")
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j", ca_file=ca.ca_file)
    result = sender.post(BODY, 1)
    sender.close()
    assert (None, [], []) == (result.status, proxy.seen, server.requests)
    assert "certificate verify failed" in result.reason


def test_no_proxy_is_honoured(servers, monkeypatch):
    """A collector listed in no_proxy is reached directly."""
    server = scripted(servers, answer(OK))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # the discard port: nothing there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    assert Answer(200, "") == sender.post(BODY, 1)
    sender.close()


# -- the real publisher -------------------------------------------------------------


def test_the_publisher_retries_posts_cut_at_the_deadline(
    publisher_for, publisher_queue: MessageQueue, tmp_path: Path
):
    """Two POSTs answered with endless 100 Continue are cut, counted and retried; all arrive."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.stall_next = 2
        publisher = publisher_for(collector.hostname, **{"collector.timeout": "0.5"}).start()
        events = [make_event(i) for i in range(40)]
        put_all(publisher_queue, events)
        collector.wait_for_events(40, timeout=20)
        assert 0 == publisher.stop()
    assert set(uuids_of(events)) - set(collector.uuids()) == set()
    assert 2 == publisher.log().count(
        "no complete answer within collector.timeout (0.5s)")
    doc = json.loads((tmp_path / "spool" / "health.json").read_text())
    assert 2 == doc["counters"]["error.io"]


def test_the_publisher_delivers_over_tls_to_a_private_ca(
    publisher_for, publisher_queue: MessageQueue, servers, ca: PrivateCA
):
    """collector.scheme = https with collector.ca_file: every event arrives over TLS."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    publisher = publisher_for(f"localhost:{port}", **{
        "collector.scheme": "https", "collector.ca_file": str(ca.ca_file)}).start()
    events = [make_event(i) for i in range(30)]
    put_all(publisher_queue, events)
    collector.wait_for_events(30)
    assert 0 == publisher.stop()
    assert (uuids_of(events), []) == (collector.uuids(), collector.problems)


def test_a_dead_letter_replay_uses_collector_ca_file(
    queue_name: str, tmp_path: Path, servers, ca: PrivateCA
):
    """--replay-dead-letter trusts collector.ca_file as the publisher does."""
    collector = tls_collector(servers, ca)
    port = collector.server.server_address[1]
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    events = [make_event(i) for i in range(3)]
    DeadLetters(str(dead), queue_name).write(events, 422, "poison event")
    config = config_file(queue_name, f"localhost:{port}", tmp_path, **{
        "collector.scheme": "https", "collector.ca_file": str(ca.ca_file)})
    done = subprocess.run(
        [sys.executable, "-m", "publisher", "--queue-name", queue_name,
         "--replay-dead-letter", str(dead), str(config)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert (0, uuids_of(events)) == (done.returncode, collector.uuids()), done.stderr


# -- interim answers, redirects and faults of the HTTP stack ---------------------------------


def test_101_is_an_error_and_the_next_post_reconnects(servers):
    """101 Switching Protocols is no interim answer to a POST: an I/O error, a new connection."""
    server = scripted(servers, answer(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                                      b"Connection: Upgrade\r\n\r\n"), answer(OK))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    answers = [sender.post(BODY, 1) for _ in range(2)]
    sender.close()
    assert [Answer(None, "InterimAnswerError: the collector answered 101 Switching Protocols "
                         "(an interim answer that switches protocols) to a POST"),
            Answer(200, "")] == answers
    assert 2 == len(set(server.client_ports))


def test_endless_interim_answers_are_cut_at_the_deadline(servers):
    """103 after 103 for ever: read past each one, and the whole POST still ends at 1 s."""
    server = scripted(servers, endless(b"", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                                       0.1))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j", timeout=1.0)
    assert Answer(None, DEADLINE) == sender.post(BODY, 1)
    sender.close()


def test_a_redirects_body_is_read_only_up_to_the_answer_bound(servers):
    """A 301 whose body never ends: the redirect is the answer once 1 MiB is read."""
    from publisher.send.transport import MAX_ANSWER

    head = (b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere/v2j\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    server = scripted(servers, endless(head, b"x" * 65536, 0.0))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j", timeout=5.0)
    started = time.monotonic()
    result = sender.post(BODY, 1)
    sender.close()
    assert Answer(301, "301 (Location: https://elsewhere/v2j)") == result
    assert (True, 1) == (time.monotonic() - started < 4.0, sender.metrics.totals["error.redirect"])
    assert 1 << 20 == MAX_ANSWER


def _deliver_through_a_fault(servers, tmp_path: Path, inject: Callable[[], None]) -> List[float]:
    """Deliver one batch while ``inject`` makes the first two POSTs fail; the waits taken."""
    from publisher.send.backoff import Backoff
    from publisher.send.delivery import Deliverer

    collector = LocalCollector(SECRET, version="2j")
    servers.append(collector.start())
    sender = sender_for(f"http://{collector.hostname}/v2j")
    waits: List[float] = []
    deliverer = Deliverer(sender.post, "2j", sender.metrics,
                          DeadLetters(str(tmp_path / "dead.jsonl"), "q"),
                          Backoff(0.01, 0.04, 1.0), lambda delay: waits.append(delay) or False)
    inject()
    assert deliverer.deliver(BODY, 1, lambda: [make_event(0)])
    sender.close()
    assert (BODY, 2) == (collector.received[-1].body, sender.metrics.totals["error.io"])
    return waits


def _twice(exc: BaseException) -> Callable[..., None]:
    """A replacement that raises ``exc`` on its first two calls, then calls the original."""
    calls: List[int] = []

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def raising(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) <= 2:
                raise exc
            return original(*args, **kwargs)
        return raising

    return wrap  # type: ignore[return-value]


def test_a_requests_fault_backs_off(servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """requests failing inside the adapter (the one monkeypatch: build_response raises)."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.build_response
    fault = _twice(requests.exceptions.InvalidHeader("injected"))
    waits = _deliver_through_a_fault(servers, tmp_path, lambda: monkeypatch.setattr(
        requests.adapters.HTTPAdapter, "build_response", fault(original)))
    assert 2 == len(waits) and all(w > 0 for w in waits)


def test_a_urllib3_fault_backs_off(servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """urllib3's pool closed under the sender (the one monkeypatch: _get_conn raises)."""
    import urllib3.connectionpool
    import urllib3.exceptions

    pool = urllib3.connectionpool.HTTPConnectionPool
    fault = _twice(urllib3.exceptions.ClosedPoolError(None, "injected"))  # type: ignore[arg-type]
    waits = _deliver_through_a_fault(servers, tmp_path, lambda: monkeypatch.setattr(
        pool, "_get_conn", fault(pool._get_conn)))
    assert 2 == len(waits) and all(w > 0 for w in waits)


def test_a_watchdog_fault_backs_off(servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture):
    """The deadline thread cannot start (the one monkeypatch: Watchdog.arm raises)."""
    from publisher.send.deadline import Watchdog

    fault = _twice(RuntimeError("can't start new thread"))
    waits = _deliver_through_a_fault(servers, tmp_path, lambda: monkeypatch.setattr(
        Watchdog, "arm", fault(Watchdog.arm)))
    assert 2 == len(waits) and all(w > 0 for w in waits)
    # Not the network's doing: its traceback is logged, once a minute (once for two faults).
    [message] = [r.getMessage() for r in caplog.records if r.exc_info]
    assert (True, True) == (message.startswith("POST to http://127.0.0.1:"),
                            message.endswith("/v2j: unexpected error (treated as no answer)"))


@pytest.mark.parametrize("value, masked", [
    ("http://user:p@ss@[bad", "http://user:***@[bad"),
    ("http://TOKEN@proxy:3128/", "http://***@proxy:3128/"),
    ("user:secret@proxy:3128", "user:***@proxy:3128"),
    ("http://proxy:3128", "http://proxy:3128"),
])
def test_proxy_credentials_are_masked_even_in_a_broken_url(value: str, masked: str):
    """The password (or a lone user name, often a token) never reaches the error line."""
    from publisher.send.transport import mask_credentials

    assert masked == mask_credentials(value)


def test_only_the_proxy_variable_requests_reads_is_checked():
    """The lower-case variable wins over the capitals; a good one passes, an ftp:// one fails."""
    from publisher.send.transport import ProxyVariableError, check_proxy_environment

    check_proxy_environment({"https_proxy": "http://proxy:3128", "HTTPS_PROXY": "http://[::1"})
    check_proxy_environment({"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://[::1"})
    with pytest.raises(ProxyVariableError) as info:
        check_proxy_environment({"ALL_PROXY": "ftp://proxy:21"})
    assert str(info.value).startswith(
        "ALL_PROXY=ftp://proxy:21: not a proxy URL: scheme 'ftp' (expected http or https); ")


def test_a_json_answer_nested_past_the_stack_is_an_answer(servers):
    """A 200 JSON body nested 200,000 deep: no RecursionError; no count in it, so it delivers."""
    body = b"[" * 200_000 + b"]" * 200_000
    server = scripted(servers, answer(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(body) + body))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    result = sender.post(BODY, 1)
    sender.close()
    assert (Answer(200, ""), True) == (result, result.ok)


def test_a_kept_answer_escapes_what_the_peer_wrote(servers):
    """Control bytes in the reason, Content-Type and body reach the log line escaped."""
    server = scripted(servers, answer(
        b"HTTP/1.1 201 Made\x1b[2J\r\nContent-Type: text/\x7fodd\r\nContent-Length: 5\r\n\r\n"
        b"a\nb\x1bc"))
    sender = sender_for(f"http://127.0.0.1:{server.port}/v2j")
    result = sender.post(BODY, 1)
    sender.close()
    assert (
        "collector answered 201 'Made\\x1b[2J' (Content-Type: 'text/\\x7fodd', first 200 bytes: "
        "'a\\nb\\x1bc'), which does not say the batch was stored; to accept it, add 201 to "
        "collector.success_statuses (default 200,202,204; 2xx takes any status below 400)"
    ) == result.kept
    assert (False, 1) == (result.ok, sender.metrics.totals["error.answer"])
