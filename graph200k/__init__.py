"""What a Graph200K sample is: node types, the task graph, the dataset layout.

The names below are loaded on first use (PEP 562), so importing one submodule
(`graph200k.catalog` in an annotator's Ray actor, say) does not also import
the task graph and networkx: that start-up time is paid by every actor.
"""

from .lazy_exports import lazy_exports

_EXPORTS = {
    "DEFAULT_NODES": "catalog", "DEGRADATION_NAMES": "catalog",
    "Graph200kError": "nodes", "Group": "nodes", "NodeRegistry": "nodes", "NodeType": "nodes",
    "Production": "nodes", "Storage": "nodes",
    "DEFAULT_FAMILIES": "tasks", "FamilyRule": "tasks", "Slot": "tasks", "Task": "tasks",
    "TaskGraph": "tasks", "default_task_graph": "tasks", "slot": "tasks",
    "HoldoutFilter": "holdout", "is_held_out": "holdout",
    "DatasetDir": "dataset_dir",
}

__all__ = [
    "DEFAULT_FAMILIES", "DEFAULT_NODES", "DEGRADATION_NAMES", "DatasetDir", "FamilyRule", "Graph200kError",
    "Group", "HoldoutFilter", "NodeRegistry", "NodeType", "Production", "Slot", "Storage", "Task", "TaskGraph",
    "default_task_graph", "is_held_out", "slot",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
