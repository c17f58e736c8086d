"""The catalog: accelerators, nodes, fabrics, workloads and regions, each number with unit, source and date."""
from dse.catalog.loader import KINDS, Registry, load_hardware_file, load_workload_file, registry
from dse.catalog.types import CNN, PRECISIONS, Accelerator, Fabric, Node, Quantity, Region, Transformer, Workload

__all__ = ["KINDS", "PRECISIONS", "CNN", "Accelerator", "Fabric", "Node", "Quantity", "Region", "Registry",
           "Transformer", "Workload", "load_hardware_file", "load_workload_file", "registry"]
