"""Opening http(s) inputs under the platform's policy (`v2w_api.policy.InputHostPolicy`).

The admission policy and the operator judge a host by its spelling; only here is a name resolved. Every
connection (the first and each redirect's) resolves the host once, refuses it when any of its addresses is in a
refused range, and then connects to exactly those checked addresses, so a name cannot resolve to a public
address for the check and a private one for the connection. Proxies from the environment are not used (the
proxy would choose the address), and redirects may lead only to http(s).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any, Callable

from v2w_api.policy import InputHostPolicy, lower_ascii


class InputHostRefused(ValueError):
    """The policy refuses the host of an input (or an address it resolves to); the message names the rule."""


def _checked_addresses(policy: InputHostPolicy, host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo's answers for `host`, each checked against the policy (an allowed name passes whatever it
    resolves to)."""
    host = lower_ascii(host)
    reason = policy.host_refusal(host)
    if reason is not None:
        raise InputHostRefused(reason)
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if policy.name_allowed(host):
        return infos
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        reason = policy.address_refusal(address, host if text == host else f"{host} ({text})")
        if reason is not None:
            raise InputHostRefused(reason)
    return infos


def guarded_create_connection(policy: InputHostPolicy) -> Callable[..., socket.socket]:
    """A `socket.create_connection` that connects only to addresses the policy allows."""

    def create_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                          source_address: tuple[str, int] | None = None, **_: Any) -> socket.socket:
        host, port = address
        error: OSError | None = None
        for family, kind, proto, _name, sockaddr in _checked_addresses(policy, host, port):
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                error = exc
                sock.close()
        raise error or OSError(f"{host}: no address")

    return create_connection


def opener(policy: InputHostPolicy) -> urllib.request.OpenerDirector:
    """An opener for http(s) only, whose every connection goes through the policy."""
    connect = guarded_create_connection(policy)

    class HTTPConnection(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = connect

    class HTTPSConnection(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = connect

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(HTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(HTTPSConnection, req, context=self._context)

    director = urllib.request.OpenerDirector()
    # Not build_opener: it would add the ftp:// and file:// handlers, and a redirect could lead there.
    for handler in (urllib.request.ProxyHandler({}), urllib.request.UnknownHandler(), HTTPHandler(), HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPRedirectHandler(),
                    urllib.request.HTTPErrorProcessor()):
        director.add_handler(handler)
    return director


__all__ = ["InputHostRefused", "guarded_create_connection", "opener"]
