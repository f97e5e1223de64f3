"""Dataset sources, one module each, registered by their spec scheme."""
from ...registry import Registry
from .base import DataSource, SourceData, SplitData

SOURCES: Registry[type[DataSource]] = Registry("data source")

# Importing a module registers its source.
from . import medmnist, synthetic_cxr, split_lists, folder, csv_table  # noqa: E402,F401

__all__ = ["SOURCES", "DataSource", "SourceData", "SplitData"]
