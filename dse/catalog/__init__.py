"""The catalog: accelerators, nodes, fabrics, workloads, regions and economics assumptions, each number with unit,
source and date."""
from dse.catalog.loader import (
           KINDS,
           Registry,
           accuracy_ranges,
           economics,
           links,
           load_hardware_file,
           load_workload_file,
           node_for,
           registry,
)
from dse.catalog.types import (
           CNN,
           PRECISIONS,
           Accelerator,
           AccuracyRange,
           Fabric,
           Node,
           Quantity,
           Region,
           Transformer,
           Workload,
)

__all__ = ["KINDS", "PRECISIONS", "CNN", "AccuracyRange", "Accelerator", "Fabric", "Node", "Quantity", "Region",
           "Registry", "Transformer", "Workload", "accuracy_ranges", "economics", "load_hardware_file",
           "links", "load_workload_file", "node_for", "registry"]
