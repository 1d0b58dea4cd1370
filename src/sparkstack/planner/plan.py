"""The plan of a whole stack: per model its weights, KV cache, overhead, first-
request spike and engine flags; the machine's budget; the start order; whether it
fits, by how much it overflows, and concrete ways out.

``StackPlan`` is the documented, stable ``sparkstack plan --json`` schema
(``schema_version`` 1; fields are only ever added).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from sparkstack.engines.base import MemoryEstimate, applied_recipe, container_image
from sparkstack.engines.registry import get_engine
from sparkstack.errors import SparkstackError, StackError
from sparkstack.machine import GIB, Device, MachineProfile, host_reserve_bytes, resolve_machine
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.modelfacts.kv_layout import layer_bytes_per_token
from sparkstack.stack.schema import ModelSpec, Policy, Runtime, Stack

SCHEMA_VERSION = 1
Inspector = Callable[[str], ModelFacts]


class ModelPlan(BaseModel):
    name: str
    engine: str
    model: str | None
    policy: str
    weights_bytes: int = 0
    kv_bytes_per_token: int = 0
    kv_tokens: int = 0
    kv_bytes: int = 0
    overhead_bytes: int = 0
    spike_bytes: int = 0
    total_bytes: int = Field(default=0, description="weights + KV + overhead (resident).")
    engine_args: list[str] = Field(default_factory=list)
    engine_env: dict[str, str] = Field(default_factory=dict)
    launch_args: list[str] = Field(
        default_factory=list,
        description="The plan's flags as the engine gets them: per rank for a model over "
        "several GPUs or nodes (engine_args are the whole model's), then the parallel sizes.",
    )
    context: int = 0
    concurrency: int = 1
    total_params: int = 0
    active_params: int = 0
    decode_ceiling_tok_s: float | None = Field(
        default=None, description="bandwidth / bytes read per decoded token at full context."
    )
    warnings: list[str] = Field(default_factory=list)
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    nodes: list[str] = Field(
        default_factory=list, description="cluster only: the nodes it runs on (head first)."
    )
    per_node_bytes: int = Field(
        default=0, description="cluster only: what it holds on each of its nodes."
    )
    runtime: str = Field(default="native", description="native | container.")
    image: str | None = Field(default=None, description="Container image, with its tag.")
    image_source: str | None = Field(default=None, description="Where the image comes from.")
    recipe_args: list[str] = Field(
        default_factory=list, description="Catalog recipe flags applied (not set by args:)."
    )
    recipe_env: dict[str, str] = Field(default_factory=dict)
    recipe_source: str | None = Field(default=None, description="The recipe's field report.")

    def estimate(self) -> MemoryEstimate:
        return MemoryEstimate(
            weights_bytes=self.weights_bytes,
            kv_bytes_per_token=self.kv_bytes_per_token,
            kv_bytes=self.kv_bytes,
            kv_tokens=self.kv_tokens,
            overhead_bytes=self.overhead_bytes,
            spike_bytes=self.spike_bytes,
            engine_args=self.engine_args,
            engine_env=self.engine_env,
        )


class MachinePlan(BaseModel):
    name: str
    device: Device
    unified: bool
    total_bytes: int
    reserve_bytes: int
    budget_bytes: int = Field(description="total - host reserve: what engines may use.")
    bandwidth_bytes_per_s: float | None


class NodePlan(BaseModel):
    """One cluster node's budget: each machine must fit its own share, never only
    the cluster in aggregate."""

    name: str
    address: str
    budget_bytes: int
    resident_bytes: int
    peak_bytes: int
    models: dict[str, int] = Field(description="model -> bytes it holds on this node.")
    fits: bool
    overflow_bytes: int


class StackPlan(BaseModel):
    schema_version: int = SCHEMA_VERSION
    machine: MachinePlan
    models: list[ModelPlan]
    start_order: list[str]
    resident_bytes: int = Field(description="Sum of the always-on models' totals.")
    peak_bytes: int = Field(
        description="resident + the largest transient: a first-request spike or waking "
        "the largest on-demand model."
    )
    fits: bool
    overflow_bytes: int
    suggestions: list[str] = Field(default_factory=list)
    nodes: list[NodePlan] = Field(
        default_factory=list, description="cluster only: each node's budget and share."
    )

    def machine_profile(self) -> MachineProfile:
        m = self.machine
        return MachineProfile(
            name=m.name, device=m.device, total_bytes=m.total_bytes, unified=m.unified,
            bandwidth_bytes_per_s=m.bandwidth_bytes_per_s,
        )  # fmt: skip

    def model(self, name: str) -> ModelPlan:
        return next(m for m in self.models if m.name == name)


def decode_ceiling(facts: ModelFacts, context: int, kv_dtype_bytes: int, bandwidth: float) -> float:
    """Tokens/s one sequence can decode at most: each token reads the active weights
    and the KV of the whole context (a window for sliding layers)."""
    active = (
        facts.weight_bytes * (facts.active_params / facts.total_params)
        if facts.total_params
        else facts.weight_bytes
    )
    kv = 0.0
    for layer in facts.layers:
        per_token = layer_bytes_per_token(layer, kv_dtype_bytes)
        span = min(layer.window or context, context) if layer.kind is LayerKind.SLIDING else context
        kv += per_token * span
    return bandwidth / (active + kv) if active + kv else 0.0


def _add_runtime(plan: ModelPlan, stack: Stack, spec: ModelSpec) -> None:
    """Runtime, image (with where it comes from) and the catalog recipe applied."""
    adapter = get_engine(spec.engine)
    if not adapter.managed:
        return
    plan.runtime = (spec.runtime or stack.container.runtime).value
    if plan.runtime == Runtime.CONTAINER.value:
        plan.image, plan.image_source = container_image(spec, adapter)
    recipe = applied_recipe(spec)
    if recipe.source:
        plan.recipe_args, plan.recipe_env = recipe.args, recipe.env
        plan.recipe_source = recipe.source


def _plan_model(
    spec: ModelSpec, facts: ModelFacts | None, machine: MachineProfile, free: int
) -> ModelPlan:
    plan = ModelPlan(name=spec.name, engine=spec.engine, model=spec.model, policy=spec.policy.value)
    plan.tensor_parallel_size = spec.tensor_parallel_size
    plan.pipeline_parallel_size = spec.pipeline_parallel_size
    adapter = get_engine(spec.engine)
    if not adapter.managed or facts is None:
        plan.warnings.append("served elsewhere: uses no memory here")
        return plan
    estimate = adapter.memory(facts, spec, machine, free)
    plan.weights_bytes, plan.kv_bytes_per_token = (
        estimate.weights_bytes,
        estimate.kv_bytes_per_token,
    )
    plan.kv_tokens, plan.kv_bytes = estimate.kv_tokens, estimate.kv_bytes
    plan.overhead_bytes, plan.spike_bytes = estimate.overhead_bytes, estimate.spike_bytes
    plan.total_bytes = estimate.total_bytes
    plan.engine_args, plan.engine_env = estimate.engine_args, estimate.engine_env
    plan.launch_args = adapter.launch_flags(spec, estimate)
    plan.context = spec.context or facts.max_context
    plan.concurrency = spec.concurrency or 1
    plan.total_params, plan.active_params = facts.total_params, facts.active_params
    plan.warnings = [*facts.notes, *estimate.notes]
    if machine.bandwidth_bytes_per_s:
        kv_dtype = 1 if spec.kv_cache_dtype == "fp8" else facts.dtype_bytes
        plan.decode_ceiling_tok_s = round(
            decode_ceiling(facts, plan.context, kv_dtype, machine.bandwidth_bytes_per_s), 1
        )
    return plan


def build_plan(
    stack: Stack, machine: MachineProfile | None = None, inspect: Inspector = inspect_source
) -> StackPlan:
    machine = machine or resolve_machine(stack.machine)
    reserve = host_reserve_bytes(stack.host_reserve_gib, machine.total_bytes)
    budget = machine.total_bytes - reserve
    facts: dict[str, ModelFacts | None] = {}
    for name, spec in stack.models.items():
        if not get_engine(spec.engine).managed or spec.model is None:
            facts[name] = None
            continue
        try:
            facts[name] = inspect(spec.model)
        except SparkstackError as exc:
            # Never plan a model whose facts are unknown as 0 bytes: refuse the plan.
            raise StackError(f"models.{name}.model: {exc}") from exc

    # Largest first: the biggest allocation goes in while the most is free.
    def size(name: str) -> int:
        found = facts[name]
        return found.weight_bytes if found else 0

    always = sorted(
        (n for n, s in stack.models.items() if s.policy is Policy.ALWAYS_ON), key=size, reverse=True
    )
    on_demand = sorted(
        (n for n, s in stack.models.items() if s.policy is Policy.ON_DEMAND), key=size, reverse=True
    )
    plans: list[ModelPlan] = []
    used = 0
    for name in [*always, *on_demand]:
        plan = _plan_model(stack.models[name], facts[name], machine, budget - used)
        if name in always:
            used += plan.total_bytes
        _add_runtime(plan, stack, stack.models[name])
        plans.append(plan)
    resident = sum(p.total_bytes for p in plans if p.policy == Policy.ALWAYS_ON.value)
    transient = max(
        [p.spike_bytes for p in plans if p.policy == Policy.ALWAYS_ON.value]
        + [p.total_bytes + p.spike_bytes for p in plans if p.policy == Policy.ON_DEMAND.value]
        + [0]
    )
    peak = resident + transient
    overflow = max(0, peak - budget)
    result = StackPlan(
        machine=MachinePlan(
            name=machine.name,
            device=machine.device,
            unified=machine.unified,
            total_bytes=machine.total_bytes,
            reserve_bytes=reserve,
            budget_bytes=budget,
            bandwidth_bytes_per_s=machine.bandwidth_bytes_per_s,
        ),
        models=plans,
        start_order=always,
        resident_bytes=resident,
        peak_bytes=peak,
        fits=overflow == 0,
        overflow_bytes=overflow,
    )
    if stack.cluster is not None:
        _plan_nodes(stack, result, machine)
    if result.overflow_bytes:
        result.suggestions = suggestions(stack, result)
    return result


def _plan_nodes(stack: Stack, result: StackPlan, machine: MachineProfile) -> None:
    """Split each model over the nodes it spans and budget every node on its own.
    Each of a model's tensor x pipeline ranks holds 1/ranks of its weights and KV
    plus a runtime of its own; a node holds ranks/nodes of them."""
    assert stack.cluster is not None
    reserve = host_reserve_bytes(stack.host_reserve_gib, machine.total_bytes)
    shares: dict[str, dict[str, int]] = {node.name: {} for node in stack.cluster.nodes}
    spikes: dict[str, list[int]] = {node.name: [0] for node in stack.cluster.nodes}
    for model in result.models:
        spec = stack.models[model.name]
        model.tensor_parallel_size = spec.tensor_parallel_size
        model.pipeline_parallel_size = spec.pipeline_parallel_size
        model.nodes = spec.nodes or [stack.cluster.head.name]
        count = len(model.nodes)
        ranks_here = spec.world_size // count
        model.per_node_bytes = (
            model.weights_bytes + model.kv_bytes
        ) // count + model.overhead_bytes * ranks_here
        for name in model.nodes:
            if model.policy == Policy.ALWAYS_ON.value:
                shares[name][model.name] = model.per_node_bytes
                spikes[name].append(model.spike_bytes // count)
            else:
                spikes[name].append(model.per_node_bytes + model.spike_bytes // count)
    for node in stack.cluster.nodes:
        profile = resolve_machine(node.machine) if node.machine is not None else machine
        budget = profile.total_bytes - reserve
        resident = sum(shares[node.name].values())
        peak = resident + max(spikes[node.name])
        result.nodes.append(
            NodePlan(
                name=node.name, address=node.address, budget_bytes=budget,
                resident_bytes=resident, peak_bytes=peak, models=shares[node.name],
                fits=peak <= budget, overflow_bytes=max(0, peak - budget),
            )
        )  # fmt: skip
    # The cluster fits when every node does: the aggregate is never the test.
    result.fits = all(node.fits for node in result.nodes)
    result.overflow_bytes = max(node.overflow_bytes for node in result.nodes)
    result.resident_bytes = max(node.resident_bytes for node in result.nodes)
    result.peak_bytes = max(node.peak_bytes for node in result.nodes)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def suggestions(stack: Stack, plan: StackPlan) -> list[str]:
    """Concrete ways out, each with what it saves, largest saving first."""
    options: list[tuple[int, str]] = []
    for model in plan.models:
        spec = stack.models[model.name]
        if model.spike_bytes and not spec.enforce_eager:
            options.append(
                (
                    model.spike_bytes,
                    f"models.{model.name}.enforce_eager: true removes "
                    f"its {_gib(model.spike_bytes)} first-request spike (CUDA graphs, "
                    "torch.compile) at a decode-speed cost",
                )
            )
        if model.kv_bytes:
            if spec.kv_cache_dtype == "auto" and model.kv_bytes_per_token:
                options.append(
                    (
                        model.kv_bytes // 2,
                        f"models.{model.name}.kv_cache_dtype: fp8 "
                        f"halves its KV cache (saves {_gib(model.kv_bytes // 2)})",
                    )
                )
            if model.context > 4096:
                options.append(
                    (
                        model.kv_bytes // 2,
                        f"models.{model.name}.context: "
                        f"{model.context // 2} (from {model.context}) saves about "
                        f"{_gib(model.kv_bytes // 2)}",
                    )
                )
            if model.concurrency > 1:
                saved = model.kv_bytes - model.kv_bytes // model.concurrency
                options.append(
                    (
                        saved,
                        f"models.{model.name}.concurrency: 1 (from "
                        f"{model.concurrency}) saves about {_gib(saved)}",
                    )
                )
        if model.policy == Policy.ALWAYS_ON.value and len(plan.start_order) > 1:
            options.append(
                (
                    model.total_bytes,
                    f"models.{model.name}.policy: on_demand frees "
                    f"{_gib(model.total_bytes)} while it is idle",
                )
            )
    for node in plan.nodes:
        if node.overflow_bytes:
            held = ", ".join(f"{name} {_gib(size)}" for name, size in node.models.items())
            options.append(
                (
                    2**62,  # the verdict itself: listed first
                    f"node {node.name} overflows by {_gib(node.overflow_bytes)} (holds {held} "
                    f"of its {_gib(node.budget_bytes)} budget): spread its models over more "
                    "nodes (nodes:, tensor_parallel_size) or move one to another node",
                )
            )
    for model in plan.models:
        if model.weights_bytes > plan.machine.budget_bytes and not model.nodes[1:]:
            options.append(
                (
                    plan.overflow_bytes,
                    f"models.{model.name}: its weights alone "
                    f"({_gib(model.weights_bytes)}) exceed the budget; use a smaller "
                    "quantization, or spread it over two machines (tensor parallel)",
                )
            )
    options.sort(key=lambda item: item[0], reverse=True)
    return [text for _, text in options]
