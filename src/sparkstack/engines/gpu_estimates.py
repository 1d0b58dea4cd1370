"""Memory terms shared by the GPU engines' models (vLLM, SGLang, TensorRT-LLM)."""

from __future__ import annotations

from sparkstack.machine import GIB, MachineProfile
from sparkstack.modelfacts.facts import ModelFacts

CUDA_RUNTIME_BYTES = int(0.75 * GIB)
"""CUDA context + cuBLAS workspace per process, measured on an H100 (SPEC §4)."""
UNIFIED_SPIKE_FRACTION = 0.6
"""First-request CUDA-graph capture + torch.compile on unified memory, as a
fraction of the weights: seed 002 saw +47 GB over a 74 GB resident model."""


def activation_peak(facts: ModelFacts, tokens: int) -> int:
    """Estimated peak of a prefill of ``tokens`` tokens plus fp32 logits of up to 256
    sequences (a rule of thumb, not an engine formula)."""
    return (
        tokens * facts.hidden_size * facts.dtype_bytes * 64
        + min(tokens, 256) * facts.vocab_size * 4
    )


def graph_spike(facts: ModelFacts, machine: MachineProfile, eager: bool) -> int:
    """CUDA graphs and torch.compile at the first requests: none in eager mode."""
    if eager or machine.device == "cpu":
        return 0
    if machine.unified:
        return int(UNIFIED_SPIKE_FRACTION * facts.weight_bytes)
    return int(0.5 * GIB + 0.02 * facts.weight_bytes)
