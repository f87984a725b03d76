"""``python -m sparsegui`` runs the same entry point as the ``sparsegui`` command."""

import sys

from sparsegui.cli import main

sys.exit(main())
