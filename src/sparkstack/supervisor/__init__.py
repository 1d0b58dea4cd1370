"""Engine processes: starting them in order, knowing their state, stopping them."""

from sparkstack.supervisor.runtime import ModelRuntime, ModelState
from sparkstack.supervisor.supervisor import Supervisor

__all__ = ["ModelRuntime", "ModelState", "Supervisor"]
