"""Runs every doctor check for one stack: plans it offline (cache and catalog,
never the hub), reads each model's facts once, and collects the results."""

from __future__ import annotations

from pathlib import Path

from sparkstack.deploy.doctor import CheckResult, DoctorReport, HostProbe, Status
from sparkstack.deploy.doctor_checks import CHECKS, DoctorInput
from sparkstack.errors import SparkstackError
from sparkstack.machine import MachineProfile, resolve_machine
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.planner.plan import build_plan
from sparkstack.stack.schema import Stack


def diagnose(
    stack: Stack,
    stack_label: str,
    host: HostProbe,
    keys_file: Path,
    machine: MachineProfile | None = None,
) -> DoctorReport:
    machine = machine or resolve_machine(stack.machine)
    facts: dict[str, ModelFacts] = {}
    by_source: dict[str, ModelFacts] = {}

    def inspect(source: str) -> ModelFacts:
        if source not in by_source:
            by_source[source] = inspect_source(source, offline=True)
        return by_source[source]

    plan = build_plan(stack, machine, inspect)
    for name, spec in stack.models.items():
        if spec.model and spec.model in by_source:
            facts[name] = by_source[spec.model]
    given = DoctorInput(
        stack=stack, stack_label=stack_label, plan=plan, machine=machine, facts=facts,
        host=host, keys_file=keys_file,
    )  # fmt: skip
    results: list[CheckResult] = []
    for check in CHECKS:
        try:
            results.append(check(given))
        except (OSError, SparkstackError) as exc:
            name = check.__name__.removeprefix("check_")
            results.append(
                CheckResult(
                    name=name,
                    status=Status.WARN,
                    message=f"could not check: {exc}",
                    fix="run doctor as a user who can read it",
                )  # fmt: skip
            )
    return DoctorReport(ok=all(r.status is not Status.FAIL for r in results), checks=results)
