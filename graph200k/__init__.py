"""What a Graph200K sample is: node types, the task graph, the dataset layout."""

from .catalog import DEFAULT_NODES, DEGRADATION_NAMES
from .nodes import Graph200kError, Group, NodeRegistry, NodeType, Production, Storage
from .tasks import DEFAULT_FAMILIES, FamilyRule, Slot, Task, TaskGraph, default_task_graph, slot

__all__ = [
    "DEFAULT_FAMILIES", "DEFAULT_NODES", "DEGRADATION_NAMES", "FamilyRule", "Graph200kError",
    "Group", "NodeRegistry", "NodeType", "Production", "Slot", "Storage", "Task", "TaskGraph",
    "default_task_graph", "slot",
]
