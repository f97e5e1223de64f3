"""``python -m medpeft.cli ...``: the ``medpeft`` command (study workers are started this way)."""
import sys

from . import main

sys.exit(main())
