"""A document lives as long as something refers to it: no reference cycles keep it."""

from __future__ import annotations

from sparsegui.core.document import Document


def test_a_document_is_freed_by_reference_counting_alone() -> None:
    """The app freezes what is alive after the first import of transformers out of the garbage collector's sight
    (sparsegui/collector.py): that is only safe because a replaced document holds no reference cycles."""
    import gc
    import weakref

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        doc = Document.demo("lenet")
        names = [n for n in doc.tensor_names() if n.endswith("weight")]
        doc.prune("l1_unstructured", names[:2], amount=0.3)
        doc.global_prune("l1_unstructured", names, 0.2)
        doc.undo()
        doc.redo()
        refs = [weakref.ref(doc), weakref.ref(doc.structure), weakref.ref(doc.state), weakref.ref(doc.history)]
        del doc
        assert [r() for r in refs] == [None] * len(refs)
    finally:
        if enabled:
            gc.enable()
