"""The Qt desktop app: views over a :class:`sparsegui.core.document.Document`, never a second engine."""
