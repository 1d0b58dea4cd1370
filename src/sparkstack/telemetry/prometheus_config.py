"""``sparkstack export prometheus``: a Prometheus configuration whose one job
scrapes the gateway's ``/metrics`` (its own series, the telemetry gauges and every
engine's relayed series), with the API key as a bearer token or a file holding it."""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from sparkstack.errors import TelemetryError


def scrape_config(
    url: str,
    key: str | None = None,
    key_file: str | None = None,
    job: str = "sparkstack",
    interval: str = "5s",
) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryError(f"--url {url!r} is not a gateway URL; use e.g. http://127.0.0.1:8080")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    job_config: dict[str, object] = {
        "job_name": job,
        "scheme": parts.scheme,
        "metrics_path": (parts.path.rstrip("/") or "") + "/metrics",
        "scrape_interval": interval,
        "static_configs": [{"targets": [f"{parts.hostname}:{port}"]}],
    }
    if key_file:
        job_config["authorization"] = {"type": "Bearer", "credentials_file": key_file}
    elif key:
        job_config["authorization"] = {"type": "Bearer", "credentials": key}
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [job_config],
    }
    header = (
        "# Prometheus configuration for a sparkstack gateway (sparkstack export prometheus).\n"
        "# Use it as is (prometheus --config.file=THIS) or copy the job into your own.\n"
    )
    if key and not key_file:
        header += "# It holds an API key: keep the file private (chmod 600).\n"
    return header + yaml.safe_dump(config, sort_keys=False)
