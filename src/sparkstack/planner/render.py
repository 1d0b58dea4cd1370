"""Plans and model facts as text for the terminal (JSON is the models' own dump)."""

from __future__ import annotations

from sparkstack.machine import GIB
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.modelfacts.kv_layout import kv_bytes_per_token
from sparkstack.planner.plan import StackPlan


def gib(value: float) -> str:
    return f"{value / GIB:,.2f} GiB"


def render_plan(plan: StackPlan, explain: bool = False) -> str:
    m = plan.machine
    bandwidth = f", {m.bandwidth_bytes_per_s / 1e9:,.0f} GB/s" if m.bandwidth_bytes_per_s else ""
    lines = [
        f"machine: {m.name} ({m.device}{', unified memory' if m.unified else ''}) total "
        f"{gib(m.total_bytes)}, host reserve {gib(m.reserve_bytes)}, budget "
        f"{gib(m.budget_bytes)}{bandwidth}",
        "",
        f"{'MODEL':<16} {'ENGINE':<9} {'POLICY':<10} {'WEIGHTS':>11} {'KV':>11} "
        f"{'KV TOKENS':>10} {'OVERHEAD':>10} {'SPIKE':>10} {'TOTAL':>11} {'CEILING':>10}",
    ]
    for p in plan.models:
        ceiling = f"{p.decode_ceiling_tok_s:,.1f} t/s" if p.decode_ceiling_tok_s else "-"
        lines.append(
            f"{p.name:<16} {p.engine:<9} {p.policy:<10} {gib(p.weights_bytes):>11} "
            f"{gib(p.kv_bytes):>11} {p.kv_tokens:>10,} {gib(p.overhead_bytes):>10} "
            f"{gib(p.spike_bytes):>10} {gib(p.total_bytes):>11} {ceiling:>10}"
        )
    lines.append("")
    for p in plan.models:
        flags = " ".join(p.launch_args)
        env = " ".join(f"{k}={v}" for k, v in p.engine_env.items())
        ranks = p.tensor_parallel_size * p.pipeline_parallel_size
        label = f"flags (each of its {ranks} ranks)" if ranks > 1 else "flags"
        if flags or env:
            lines.append(f"{p.name} {label}: {' '.join(x for x in (env, flags) if x)}")
        if explain and ranks > 1 and p.engine_args:
            lines.append(f"  whole model: {' '.join(p.engine_args)}")
        if p.image:
            source = f" ({p.image_source})" if explain and p.image_source else ""
            lines.append(f"{p.name} image: {p.image}{source}")
        if explain and p.recipe_source:
            recipe = " ".join([*(f"{k}={v}" for k, v in p.recipe_env.items()), *p.recipe_args])
            lines.append(f"  recipe: {recipe or '(all overridden by args:)'} ({p.recipe_source})")
        if explain and p.total_bytes:
            lines.append(
                f"  weights {gib(p.weights_bytes)} ({p.total_params / 1e9:,.2f} B params, "
                f"{p.active_params / 1e9:,.2f} B active); KV {p.kv_bytes_per_token:,} B/token "
                f"of context -> {p.kv_tokens:,} tokens in {gib(p.kv_bytes)} "
                f"({p.concurrency} x {p.context:,} planned); overhead {gib(p.overhead_bytes)}"
                f"; spike {gib(p.spike_bytes)}"
            )
        for warning in p.warnings:
            lines.append(f"  warning: {warning}")
    lines += render_nodes(plan)
    lines += [
        "",
        f"start order: {', '.join(plan.start_order) or '-'}",
        f"resident {gib(plan.resident_bytes)}, peak {gib(plan.peak_bytes)} of "
        f"{gib(m.budget_bytes)} budget",
    ]
    if plan.fits and plan.nodes:
        spare = min(node.budget_bytes - node.peak_bytes for node in plan.nodes)
        lines.append(f"fits on every node, with at least {gib(spare)} to spare on each")
    elif plan.fits:
        lines.append(f"fits, with {gib(m.budget_bytes - plan.peak_bytes)} to spare")
    elif plan.nodes:
        over = [f"{n.name} by {gib(n.overflow_bytes)}" for n in plan.nodes if n.overflow_bytes]
        aggregate = sum(n.budget_bytes for n in plan.nodes)
        lines.append(
            f"DOES NOT FIT: node {', '.join(over)} overflows its own budget (the cluster's "
            f"{gib(aggregate)} in aggregate does not count: each node holds its own share)."
        )
        lines.append("ways out:")
        lines += [f"  - {text}" for text in plan.suggestions]
    else:
        lines.append(f"DOES NOT FIT: the peak overflows the budget by {gib(plan.overflow_bytes)}.")
        lines.append("ways out:")
        lines += [f"  - {text}" for text in plan.suggestions]
    return "\n".join(lines)


def render_nodes(plan: StackPlan) -> list[str]:
    """Each cluster node's budget and what every model holds there."""
    if not plan.nodes:
        return []
    lines = ["", "cluster nodes (each must fit its own share):"]
    for node in plan.nodes:
        held = ", ".join(f"{name} {gib(size)}" for name, size in node.models.items()) or "-"
        verdict = "fits" if node.fits else f"OVERFLOWS by {gib(node.overflow_bytes)}"
        lines.append(
            f"  {node.name:<12} {node.address:<15} budget {gib(node.budget_bytes)}, resident "
            f"{gib(node.resident_bytes)}, peak {gib(node.peak_bytes)}: {verdict} ({held})"
        )
    for model in plan.models:
        if model.nodes[1:]:
            lines.append(
                f"  {model.name}: TP {model.tensor_parallel_size} x PP "
                f"{model.pipeline_parallel_size} over {', '.join(model.nodes)}, "
                f"{gib(model.per_node_bytes)} per node"
            )
    return lines


def render_facts(facts: ModelFacts) -> str:
    layers = ", ".join(f"{count} {kind}" for kind, count in facts.layer_summary.items())
    windows = sorted({layer.window for layer in facts.layers if layer.window})
    lines = [
        f"source:        {facts.source} ({facts.format})",
        f"architecture:  {facts.architecture} ({facts.model_type})",
        f"parameters:    {facts.total_params / 1e9:,.3f} B total, "
        f"{facts.active_params / 1e9:,.3f} B active{' (MoE)' if facts.is_moe else ''}",
        f"weights:       {gib(facts.weight_bytes)} "
        + ", ".join(f"{k} {gib(v)}" for k, v in facts.weight_bytes_by_format.items()),
        f"quantization:  {facts.quantization or 'none'}; dtype {facts.dtype}",
        f"layers:        {layers}" + (f"; sliding window {windows}" if windows else ""),
        f"max context:   {facts.max_context:,}",
        f"counts from:   {facts.params_source}",
    ]
    if facts.encoder_only:
        lines.append("KV cache:      none (encoder-only)")
    else:
        lines.append(
            f"KV per token:  {kv_bytes_per_token(facts, facts.dtype_bytes):,} B (auto/"
            f"{facts.dtype}), {kv_bytes_per_token(facts, 1):,} B (fp8)"
        )
    lines += [f"warning:       {note}" for note in facts.notes]
    return "\n".join(lines)
