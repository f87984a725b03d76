"""Pruning-method plugins shipped with SparseGUI (registered through the ``sparsegui.pruning_methods`` entry point)."""
