"""``python -m sparsegui`` runs the same entry point as the ``sparsegui`` command."""

from sparsegui.cli import run

run()
