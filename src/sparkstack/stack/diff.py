"""What a reload changes: the running stack against the stack file as it reads
now, model by model (added, removed, changed, unchanged) plus the stack-wide
settings a running stack cannot take live. Pure: no I/O, no decisions about
processes (supervisor/reload.py carries the diff out)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sparkstack.stack.schema import GatewaySpec, Stack

LIVE_GATEWAY_FIELDS = frozenset({"reload_drain_timeout"})
"""Gateway settings a reload takes as they are (read when the reload runs)."""


@dataclass(frozen=True)
class StackDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_settings: list[str] = field(default_factory=list)
    """Stack settings that changed in the file but keep their running value until the
    next `sparkstack up` (e.g. gateway.listen)."""
    blocked: str | None = None
    """Why the new stack cannot be applied live at all (None: it can)."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.kept_settings)


def diff_stacks(old: Stack, new: Stack) -> StackDiff:
    """Compare two validated stacks. A model is changed when its spec differs, or
    when the stack-wide container settings it starts with differ (then every
    managed-by-container model would start differently: all count as changed)."""
    container_changed = old.container != new.container
    added = [name for name in new.models if name not in old.models]
    removed = [name for name in old.models if name not in new.models]
    changed, unchanged = [], []
    for name, spec in new.models.items():
        if name not in old.models:
            continue
        if spec != old.models[name] or container_changed:
            changed.append(name)
        else:
            unchanged.append(name)
    blocked = None
    if old.cluster != new.cluster:
        blocked = (
            "the cluster: section changed; the Ray cluster cannot change under a running "
            "stack - run `sparkstack down` and `sparkstack up` to apply it"
        )
    return StackDiff(
        added=added,
        removed=removed,
        changed=changed,
        unchanged=unchanged,
        kept_settings=_kept_gateway_settings(old.gateway, new.gateway),
        blocked=blocked,
    )


def _kept_gateway_settings(old: GatewaySpec, new: GatewaySpec) -> list[str]:
    return [
        f"gateway.{name}"
        for name in GatewaySpec.model_fields
        if name not in LIVE_GATEWAY_FIELDS and getattr(old, name) != getattr(new, name)
    ]
