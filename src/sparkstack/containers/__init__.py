"""Engines in containers (docker or podman): the container command built from
the plan, a process-like handle driving the container through its CLI, and the
label sweep that `down` uses after a killed `up`."""
