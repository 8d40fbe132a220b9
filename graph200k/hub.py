"""Whether the Hugging Face Hub can be reached from here, answered in seconds.

huggingface_hub retries a dead network for minutes and then raises through pages of
httpx tracebacks. A command that would download (`annotators download`, a trainer whose
`model.pretrained` is not cached) asks `hub_unreachable()` first: offline mode
(`HF_HUB_OFFLINE`), or no TCP answer from the endpoint (`HF_ENDPOINT`, default
https://huggingface.co; through the proxy the environment names for it, if any) within
`timeout` seconds, gives one sentence saying why; a reachable Hub gives None. Only the
connection is tried: no request is sent, no token is read.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    """The Hub URL huggingface_hub uses (`HF_ENDPOINT`, default https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_offline() -> bool:
    """huggingface_hub's offline mode (`HF_HUB_OFFLINE=1`)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _target(endpoint: str) -> tuple[str, int, str]:
    """(host, port, what) to connect to for `endpoint`: its proxy when the environment names one."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme or "https"
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or 8080, f"{endpoint} through the proxy {p.hostname}:{p.port or 8080}"
    return host, port, endpoint


def tcp_unreachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why nothing answers a TCP connection to host:port within `timeout` s (name lookup included), or None.

    The lookup runs in a daemon thread: `getaddrinfo` has no timeout of its own."""
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as err:
            outcome.append(err.strerror or str(err) or type(err).__name__)

    thread = threading.Thread(target=connect, name=f"probe-{host}:{port}", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def hub_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the Hub cannot be reached from here (one sentence), or None when it answers."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set (huggingface_hub's offline mode)"
    endpoint = hub_endpoint()
    host, port, what = _target(endpoint)
    if not host:
        return f"HF_ENDPOINT {endpoint!r} names no host"
    why = tcp_unreachable(host, port, timeout)
    return None if why is None else f"{what} cannot be reached ({why})"
