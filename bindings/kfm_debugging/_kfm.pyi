# Type stubs for the C extension kfm_debugging._kfm (bindings/src/kfm_module.c, kfm_hooks.c).
from types import TracebackType
from contextvars import ContextVar
from typing import Any, Callable, Literal, TypeVar

_T = TypeVar("_T")

version: str
SCHEMA_VERSION: int
NAME_MAX: int
STACK_MAX: int

def backends() -> list[dict[str, Any]]:
    """Builtin backends: [{name, available, reason}] from the engine's probe."""

def level_name(level: int) -> str: ...

class Session:
    """One kfm session.  config is the engine's "key=value,..." string."""

    def __init__(self, config: str | None = None) -> None: ...
    @property
    def level(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def running(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def restart(self) -> None:
        """Run a stopped session again with its results cleared (registrations,
        backends and live threads' slots are kept; failures restarts from 0)."""
    def close(self) -> None: ...
    def __enter__(self) -> Session: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]: ...
    def register(self, name: str) -> int: ...
    def enter(self, node_id: int, /) -> None: ...
    def exit(self, node_id: int, /) -> None: ...
    def call(self, node_id: int, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """fn(*args, **kwargs) inside node_id, exited even when fn raises; a refused
        transition is counted in failures, never raised."""
    def try_enter(self, node_id: int, /) -> bool: ...
    def try_exit(self, node_id: int, /) -> bool: ...
    @property
    def failures(self) -> int: ...
    def enter_name(self, name: str, /) -> None: ...
    def exit_name(self, name: str, /) -> None: ...
    def node_name(self, node_id: int, /) -> str: ...
    def current(self) -> str | None: ...
    def depth(self) -> int: ...
    def totals(self, metric: str | None = None, /) -> dict[str, tuple[int, float, float | None]]:
        """{node: (count, total_ns, inclusive value of metric or None)}: a cheap part of report()."""
    def report(self) -> dict[str, Any]:
        """{summary, metrics, sample_metrics, nodes: {name: stats}, edges: {nested, follows}, backends}"""
    def samples(self) -> dict[str, Any]:
        """{metrics, t_ns: memoryview[d], values: memoryview[d] (n, len(metrics)) (an empty 1-D view when either is 0),
        offsets: memoryview[I] (n+1), threads/nodes: memoryview[I], names: {id: name}}"""
    def events(self) -> dict[str, Any]:
        """{metrics, t_ns: memoryview[d], thread/node: memoryview[I], kind: memoryview[B]
        (0 enter, 1 exit), values: memoryview[d] (n, len(metrics)) (empty 1-D when either is 0), names: {id: name},
        tids: [OS thread id of engine thread index i]}"""
    def export(self, path: str, /) -> None: ...
    def backend_json(self, name: str, /) -> str: ...

class HookData:
    """A run's tables as the LangGraph hooks read them (Recorder._fast)."""

    session: Session
    id_task: dict[str, int]
    setup_wall: dict[str, list[int]]
    id_compute: dict[str, int]
    id_update: dict[str, int]
    cend: dict[str, int]
    post_ns: dict[str, int]
    state_tracking: bool
    shared_update_ns: dict[str, float]
    shared_update_calls: dict[str, int]

    def __init__(self, *, session: Session, id_task: dict[str, int],
                 setup_wall: dict[str, list[int]], id_compute: dict[str, int],
                 id_update: dict[str, int], cend: dict[str, int], post_ns: dict[str, int],
                 state_tracking: bool, shared_update_ns: dict[str, float],
                 shared_update_calls: dict[str, int]) -> None: ...

class Hook:
    """A LangGraph hook whose common case runs in C (kind 0 prepare_single_task,
    1 run_with_retry, 2 a node's function step, 3 apply_writes); the rest goes to slow."""

    def __init__(self, kind: int, orig: Callable[..., Any], slow: Callable[..., Any],
                 active: ContextVar[Any], depth: ContextVar[int], extra: Any = None) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    @property
    def orig(self) -> Callable[..., Any]: ...
    @property
    def slow(self) -> Callable[..., Any]: ...
