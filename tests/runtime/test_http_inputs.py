"""http(s) inputs under the platform's policy, fetched from a real HTTP server on loopback: refused by address
after DNS, on every redirect, and allowed only by the platform's lists; a run started by hand has no policy."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path

import pytest

from v2w_api.policy import InputHostPolicy
from v2w_api.uris import StorageError
from v2w_runtime import storage

REFUSED = "refused by the platform's input policy"


@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1; /hop redirects to the same file on 127.0.0.2 (also loopback on Linux)."""
    (tmp_path / "in.jpg").write_bytes(b"picture")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.2:{self.server.server_port}/in.jpg")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 0), functools.partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_port
    httpd.shutdown()


@pytest.fixture
def policy():
    def use(**lists) -> None:
        storage.use_input_hosts(InputHostPolicy(**lists))

    yield use
    storage.use_input_hosts(None)


@pytest.fixture
def dns(monkeypatch):
    """`inputs.example.com` resolves to 127.0.0.1 (every other name as usual); counts the lookups."""
    real, lookups = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        return real("127.0.0.1" if host == "inputs.example.com" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def fetch(uri: str, tmp_path: Path) -> bytes:
    return storage.fetch_file(uri, tmp_path / "cache").read_bytes()


def test_by_hand_there_is_no_policy(server, tmp_path):
    assert fetch(f"http://127.0.0.1:{server}/in.jpg", tmp_path) == b"picture"


def test_a_loopback_address_is_refused_unless_its_range_is_allowed(server, policy, tmp_path):
    policy()
    with pytest.raises(StorageError, match=f"{REFUSED}: host 127.0.0.1 is in the refused range 127.0.0.0/8 "
                                           r"\(loopback\): allow it with policy.inputs.allowedCIDRs") as refused:
        fetch(f"http://127.0.0.1:{server}/in.jpg", tmp_path)
    assert not refused.value.retryable
    policy(allowed_cidrs=["127.0.0.1/32"])
    assert fetch(f"http://127.0.0.1:{server}/in.jpg", tmp_path) == b"picture"


def test_a_name_is_refused_by_the_address_it_resolves_to_and_the_connection_uses_that_address(
        server, policy, dns, tmp_path):
    policy()
    with pytest.raises(StorageError, match=rf"{REFUSED}: host inputs.example.com \(127.0.0.1\) is in the refused "
                                           r"range 127.0.0.0/8"):
        fetch(f"http://inputs.example.com:{server}/in.jpg", tmp_path)
    dns.clear()
    policy(allowed_hosts=["*.example.com"])  # an allowed name is trusted wherever it resolves
    assert fetch(f"http://inputs.example.com:{server}/in.jpg", tmp_path) == b"picture"
    assert dns == ["inputs.example.com"], "resolved once: the address checked is the address connected to"


def test_a_redirect_to_a_refused_address_is_refused(server, policy, tmp_path):
    policy(allowed_cidrs=["127.0.0.1/32"])
    with pytest.raises(StorageError, match=f"{REFUSED}: host 127.0.0.2 is in the refused range 127.0.0.0/8"):
        fetch(f"http://127.0.0.1:{server}/hop", tmp_path)
    policy(allowed_cidrs=["127.0.0.0/8"])
    assert fetch(f"http://127.0.0.1:{server}/hop", tmp_path) == b"picture"


@pytest.mark.parametrize("uri, rule", [
    ("http://169.254.169.254/latest/meta-data/", "refused range 169.254.0.0/16"),
    ("http://metadata.google.internal/computeMetadata/v1/", "refused name"),
    ("http://2852039166/", "ends in a number"),
    ("http://a@b@example.com/", r"must be http\(s\)://"),
])
def test_what_the_admission_policy_refuses_is_refused_before_any_lookup(policy, dns, tmp_path, uri, rule):
    policy()
    with pytest.raises(StorageError, match=rule):
        fetch(uri, tmp_path)
    assert dns == []
