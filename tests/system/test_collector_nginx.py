"""The collector under gunicorn behind the documented nginx site file (docs/deploy/).

The test runs Debian's nginx in the foreground with a private prefix, on the
very site file the docs give (only its two addresses changed to free
loopback ports), in front of gunicorn with two sync workers.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.collector import free_port
from tests.support.kafka import GunicornCollector
from tests.support.processes import REPO, reap
from tests.support.publisher import SECRET_B64
from tests.support.service import post_batch, v1_event
from tests.system.test_collector_slow_clients import SOCKETS, slow_sockets

pytestmark = pytest.mark.system

SITE = Path(REPO) / "docs" / "deploy" / "nginx-collector.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@contextmanager
def nginx_in_front(tmp_path: Path, upstream_port: int) -> Iterator[str]:
    """nginx on a free port with the documented site file, proxying to ``upstream_port``."""
    if NGINX is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: apt-get install nginx")
        pytest.skip("needs nginx in front of gunicorn: apt-get install nginx (Debian/Ubuntu)")
    port = free_port()
    site = SITE.read_text()
    for documented, here in (("listen 8080;", f"listen 127.0.0.1:{port};"),
                             ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")):
        assert 1 == site.count(documented), documented
        site = site.replace(documented, here)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site)
    (prefix / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
""")
    process = subprocess.Popen([NGINX, "-e", str(prefix / "error.log"), "-p", str(prefix),
                                "-c", str(prefix / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        url = f"http://127.0.0.1:{port}"
        import requests

        while True:
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.communicate()[1]
                    raise AssertionError(f"nginx did not start: {stderr!r}") from None
                time.sleep(0.05)
        yield url
    finally:
        reap(process)


@pytest.mark.parametrize("trickle", [False, True], ids=["idle", "byte-a-second"])
def test_behind_the_documented_nginx_200_slow_sockets_leave_an_honest_post_within_a_second(
    tmp_path: Path, trickle: bool
):
    """gunicorn -w 2 (sync) behind nginx: with 200 slow connections, honest POSTs under 1 s."""
    settings = {"keys": f"TestKey={SECRET_B64}", "sqlite.path": str(tmp_path / "events.sqlite3")}
    gunicorn = GunicornCollector(settings, tmp_path / "gunicorn.log", workers=2)
    try:
        with nginx_in_front(tmp_path, gunicorn.port) as url:
            with slow_sockets(url, SOCKETS, trickle):
                time.sleep(2.5 if trickle else 0.5)
                took = []
                for number in range(5):
                    started = time.monotonic()
                    response = post_batch(url, [v1_event(number)], timeout=10)
                    took.append(time.monotonic() - started)
                    assert 200 == response.status_code, response.text
    finally:
        gunicorn.stop()
    print(f"FIGURE gunicorn -w 2 behind nginx, {SOCKETS} {'trickling' if trickle else 'idle'} "
          f"sockets: honest POST max {max(took):.3f} s")
    assert max(took) < 1.0, took
