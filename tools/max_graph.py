"""Letting MAX 25.7 forget the tensors that nothing uses any more.

Eager MAX keeps every realized Tensor (each Tensor.from_dlpack input, each
output of a compiled call, each parameter) as a source of one global graph,
with a strong reference, until the process ends. Every later eager
operation rebuilds that graph with all of them, and gets slower the more
there are: measured here, one Tensor.ones([64]) took 0.6 s with no other
tensor alive, 7 to 10 s with 1000, and 160 to 185 s with 3000. A long
pytest run that checks many lessons in one process reaches thousands, and
a check then seems to hang (issue 6, CI stop 10).

release_unused_tensors() drops the global graph's own references, lets
Python collect what nobody else holds, and re-adds the rest, the same way
MAX itself re-adds its sources after each evaluation.
"""

from __future__ import annotations

import gc
import weakref


def release_unused_tensors() -> int:
    """Forget every realized Tensor that only MAX's global graph holds.
    Returns how many are left. Does nothing while lazy (unrealized)
    tensors are pending, since they are values of the current graph."""
    import sys

    tensor = sys.modules.get("max.experimental.tensor")
    if tensor is None:  # MAX not imported: nothing to forget
        return 0
    graph = tensor.GRAPH
    gc.collect()
    if len(graph.unrealized):
        return len(graph.sources)
    refs = [weakref.ref(t) for t in graph.sources.values()]
    graph.sources = {}
    gc.collect()
    alive = [t for t in (ref() for ref in refs) if t is not None]
    tensor.ComputeGraph.__init__(graph, context=graph.graph._context, sources=alive)
    return len(alive)
