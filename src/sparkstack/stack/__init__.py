"""The stack file: its schema, its loader and the built-in demo stack."""

from sparkstack.stack.loader import load_stack, load_stack_text
from sparkstack.stack.schema import GatewaySpec, ModelSpec, Policy, Stack

__all__ = ["GatewaySpec", "ModelSpec", "Policy", "Stack", "load_stack", "load_stack_text"]
