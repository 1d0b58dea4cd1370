"""The nginx site file in front of a stack's gateway, with every lesson of seed
002: streaming unbuffered (SSE), hour-long generations not cut at 60 s, long
prompts over the 1 MiB default body, the upstream pinned by IP (``.local`` names
do not resolve), an upstream name unique to the stack (two enabled sites must not
both define ``vllm_backend``), HTTP first so ``certbot --nginx`` adds TLS, and
``/health`` reachable without a key."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

from sparkstack.errors import SparkstackError
from sparkstack.stack.schema import Stack

MIN_STREAM_TIMEOUT_S = 3600
_WILDCARD = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class NginxSite:
    """What the site file needs, already checked."""

    server_name: str
    upstream_name: str
    upstream: str
    """ip:port of the gateway, as nginx should dial it."""
    listen: list[str]
    body_limit: str
    timeout_s: int


def upstream_name(stack_name: str, server_name: str, port: int) -> str:
    """A name unique per stack and site: ``sparkstack_<stack>_<server>_<port>``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{stack_name}_{server_name}").strip("_").lower()
    return f"sparkstack_{slug}_{port}"


def _upstream_host(stack: Stack, upstream_ip: str | None) -> str:
    host = upstream_ip or stack.gateway.host
    if host in _WILDCARD:
        host = "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise SparkstackError(
            f"the gateway's address {host!r} is a name, and nginx resolves upstream names "
            "once at start through the system resolver (mDNS .local names often fail); "
            "pass the gateway machine's IP with --upstream-ip"
        ) from None
    return f"[{address}]" if address.version == 6 else str(address)


def _listen_lines(listen: str) -> list[str]:
    if listen.isdigit():
        return [listen, f"[::]:{listen}"]
    return [listen]


def build_site(
    stack: Stack,
    stack_name: str,
    server_name: str,
    upstream_ip: str | None = None,
    listen: str = "80",
) -> NginxSite:
    if not re.fullmatch(r"[A-Za-z0-9.*_-]+", server_name):
        raise SparkstackError(
            f"--server-name {server_name!r} is not a host name; write e.g. inference.example.com"
        )
    kib = math.ceil(stack.gateway.max_body_mib * 1024)
    return NginxSite(
        server_name=server_name,
        upstream_name=upstream_name(stack_name, server_name, stack.gateway.port),
        upstream=f"{_upstream_host(stack, upstream_ip)}:{stack.gateway.port}",
        listen=_listen_lines(listen),
        body_limit=f"{kib // 1024}m" if kib % 1024 == 0 else f"{kib}k",
        timeout_s=max(MIN_STREAM_TIMEOUT_S, math.ceil(stack.gateway.read_timeout)),
    )


_TEMPLATE = """\
# nginx site for the sparkstack stack {stack_name!r}, written by `sparkstack export nginx`.
# Install:  sudo cp THIS /etc/nginx/sites-available/{server_name}
#           sudo ln -s /etc/nginx/sites-available/{server_name} /etc/nginx/sites-enabled/
#           sudo nginx -t && sudo systemctl reload nginx
# TLS:      sudo certbot --nginx -d {server_name}
#           (this file is HTTP only on purpose: certbot adds `listen 443 ssl`, the
#           certificate paths it creates and the HTTP->HTTPS redirect; nginx -t would
#           fail on certificate paths that do not exist yet.)

# The upstream name is unique to this stack and site: an upstream lives in the
# global http{{}} context, and two enabled files defining the same name stop nginx.
# The gateway is pinned by IP: nginx resolves names once at start and mDNS .local
# names often fail there.
upstream {upstream_name} {{
    server {upstream};
    keepalive 32;
}}

server {{
{listen_lines}
    server_name {server_name};

    # Long prompts exceed nginx's 1m default (the gateway's gateway.max_body_mib).
    client_max_body_size {body_limit};

    location / {{
        proxy_pass http://{upstream_name};
        # HTTP/1.1 with an empty Connection header keeps upstream connections alive.
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        # The gateway refuses a Host it does not listen on (DNS rebinding): send
        # its own address, and the name the client used as X-Forwarded-Host.
        proxy_set_header Host {upstream};
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # The client's "Authorization: Bearer sk-ss-..." is passed on as it is.

        # Token streaming (SSE): no buffering, no cache, no gzip, in either direction,
        # and tell any proxy after this one not to buffer either.
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_cache off;
        gzip off;
        add_header X-Accel-Buffering no always;

        # Generations run long: never cut a stream at nginx's 60 s default.
        proxy_connect_timeout 60s;
        proxy_send_timeout {timeout_s}s;
        proxy_read_timeout {timeout_s}s;
        send_timeout {timeout_s}s;
    }}

    # Health for load balancers and uptime checks: the gateway answers it without a key.
    location = /health {{
        proxy_pass http://{upstream_name}/health;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {upstream};
        proxy_set_header Authorization "";
        access_log off;
    }}
}}
"""


def render_site(site: NginxSite, stack_name: str) -> str:
    return _TEMPLATE.format(
        stack_name=stack_name,
        server_name=site.server_name,
        upstream_name=site.upstream_name,
        upstream=site.upstream,
        listen_lines="\n".join(f"    listen {line};" for line in site.listen),
        body_limit=site.body_limit,
        timeout_s=site.timeout_s,
    )


def nginx_site(
    stack: Stack,
    stack_name: str,
    server_name: str,
    upstream_ip: str | None = None,
    listen: str = "80",
) -> str:
    """The site file text for ``stack`` served as ``server_name``."""
    site = build_site(stack, stack_name, server_name, upstream_ip, listen)
    return render_site(site, stack_name)
