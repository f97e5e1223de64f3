"""medpeft: parameter-efficient fine-tuning of vision foundation models for medical images."""
import os as _os
import sys as _sys

__version__ = "0.1.0"

#: How long an idle OpenMP thread of torch's libgomp spins before it sleeps. libgomp's default
#: (300,000 spins) is tuned for a machine of one's own: two training processes sharing the cores
#: then wait on each other's spinning threads and each ran at 0.18-0.26x its alone speed (fair:
#: 0.5x). A short spin keeps the alone speed within a few percent and gives each of two jobs
#: about 0.45x (docs/performance.md, "Two jobs on one machine"; benchmarks/processes.py).
#: It must be set before torch is imported (libgomp reads it once), so it is set here; an
#: explicit GOMP_SPINCOUNT or OMP_WAIT_POLICY is kept.
OMP_SPIN_COUNT = "2000"
if "torch" not in _sys.modules and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", OMP_SPIN_COUNT)
