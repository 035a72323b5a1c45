"""Loaded by every Python process the tests start (via PYTHONPATH): refuse non-loopback sockets."""

import ipaddress
import socket

_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise OSError(f"tests may not open network connections (tried {host})")
    return _connect(self, address)


socket.socket.connect = _loopback_only
