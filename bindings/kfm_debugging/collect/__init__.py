"""Collection: the only package that knows LangGraph.

- ``hooks``: where the Debugger hooks into LangGraph (task preparation, the
  runner, the node's function, write application, thread pools) and the
  per-run ``Recorder`` the hooks fill; the common cases run in C
  (``_kfm.Hook``, bindings/src/kfm_hooks.c).
- ``statesize``: the state-size measure of state tracking.
- ``runner``: ``Collector``, which runs a graph inside a reused engine
  session and turns each run into a ``RunData``.
- ``run``: ``RunData``, a finished run as analysis/ reads it.
"""

from .run import RunData
from .runner import Collector, Settings, compiled_graph, graph_kind
from .statesize import state_size

__all__ = ["Collector", "RunData", "Settings", "compiled_graph", "graph_kind", "state_size"]
