"""Dataset sources, one module each, registered by their spec scheme in ``SOURCES``."""
# importing a module registers its source; this order is the order `medpeft` lists them in
from . import medmnist, synthetic_cxr, split_lists, folder, csv_table  # noqa: F401  # isort: skip
from .base import SOURCES, DataSource, SourceData, SplitData

__all__ = ["SOURCES", "DataSource", "SourceData", "SplitData"]
