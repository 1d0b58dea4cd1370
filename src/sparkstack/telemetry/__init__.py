"""Seeing the stack: the status document and event stream the gateway serves, the
web dashboard's assets, ``sparkstack top``, footprints, and the Prometheus and
Grafana exports. Sits between the supervisor and the gateway: it reads the
supervisor's runtimes and is wired into the gateway's routes."""
