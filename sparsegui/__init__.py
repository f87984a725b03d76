"""SparseGUI: see and shape sparsity in real PyTorch checkpoints."""

__version__ = "0.1.0"
