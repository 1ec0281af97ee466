"""State size measures used by the Debugger's state tracking.

``deep_sizeof`` is the memory a value holds: sys.getsizeof of the object and
of everything reachable through containers, instance dicts and slots, each
object counted once.  It allocates nothing proportional to the data (unlike
pickling, which would copy a 50 MB state and disturb the memory profile it is
part of), and it is deterministic for a given value, so a node's state impact
is exact: the difference of two measures of the state.

``count_items`` is the number of entries of a top-level container value (a
list channel with N more entries has N more items), 1 for a scalar.

Measuring must not change the program it measures (``measure``):

* It never raises into the graph.  A value whose ``__sizeof__`` raises, returns
  a negative number, a non-number or more than the address space, or whose
  attribute access (``__dict__``, slots, a Mapping's ``items``) raises, is
  counted as *unsizable* (type and reason) and contributes nothing; the walk
  goes on with the rest.  KeyboardInterrupt and SystemExit are never caught:
  they propagate at the point they were raised.
* Its bookkeeping stays small.  "Each object once" needs the ids of objects
  already counted, but only for objects that can be reached twice: an object
  whose reference count shows a single reference (its container) is reached
  only through that container, which is itself counted once, so it is not
  recorded.  Of the objects that are shared, containers are always recorded
  (cycles, shared sub-structures); atomic objects (numbers, strings, bytes:
  they reference nothing) are recorded up to ``ATOM_IDS_MAX`` distinct ones
  (None, small ints, interned strings, dict keys are few), past which a shared
  atomic object is counted at each reference (exact unless more than that many
  distinct atomic objects are each referenced several times inside the value).
  A container of atomic objects only, none shared, is summed at C speed
  (map/sum) without a Python step per item.
* The walk is iterative (a stack of iterators: memory in the nesting depth,
  not in the size; no recursion limit), and cycles are counted once.
* It runs no code of the value's own where it can avoid it: dict subclasses
  and list/tuple/set/deque subclasses are read through the base type's
  methods, slots through their member descriptors (an unset slot does not
  reach ``__getattr__``), instance dicts only where the type has one.  The
  user code it still calls is ``__sizeof__`` of non-builtin types, a
  ``__dict__`` property, and ``items``/``len`` of a Mapping that is not a dict.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Mapping
from itertools import islice
from types import MemberDescriptorType
from typing import Any, NamedTuple

_ATOMIC = (int, float, complex, bool, str, bytes, bytearray, type(None), range, memoryview)
# Exact types whose sys.getsizeof runs no user code and that reference nothing
# the walk follows.
_ATOMIC_TYPES = frozenset(_ATOMIC)
_MUTABLE_ATOMIC = frozenset((bytearray, memoryview))
_SEQ_TYPES = frozenset((list, tuple, set, frozenset, deque))
_SEQ_BASES = (list, tuple, set, frozenset, deque)
_IMMUTABLE_SEQ = frozenset((tuple, frozenset))
# Atomic types whose every instance has the same size (no variable part).
_FIXED_SIZE = frozenset(t for t in (float, complex, type(None), range)
                        if t.__itemsize__ == 0 and t.__sizeof__ is object.__sizeof__)
# Distinct shared atomic objects whose ids are kept to count them once.
ATOM_IDS_MAX = 1 << 12
# No object is larger than the user address space (48-bit virtual addresses).
SIZE_MAX = 1 << 47
# Containers shorter than this are walked item by item (the C-speed checks
# of the bulk path cost more than they save).
_BULK_MIN = 32
# A large container of atomic items with some shared is summed in chunks of
# this many (statesize._walk's chunked).
_CHUNK = 4096
_PASS = (KeyboardInterrupt, SystemExit)


def _calibrate() -> tuple[int, int]:
    """sys.getrefcount of an object held once by a container, as the walk
    sees it: in a ``for x in iterator`` loop, and through map()."""
    holder = [object()]
    mapped = max(map(sys.getrefcount, holder))
    loop = 0
    for x in iter(holder):
        loop = sys.getrefcount(x)
    return loop, mapped


_ONE_REF_LOOP, _ONE_REF_MAP = _calibrate()


class Measure(NamedTuple):
    """One value's measure: bytes, items, what could not be sized
    ([(type name, reason)]), and whether everything reached is immutable
    (exact tuples, frozensets, numbers, strings, bytes, ranges)."""

    bytes: int
    items: int
    unsizable: list[tuple[str, str]]
    immutable: bool


def _type_name(t: Any) -> str:
    try:
        return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__
    except BaseException as e:  # noqa: BLE001 - a hostile metaclass
        if isinstance(e, _PASS):
            raise
        return "?"


def _reason(e: BaseException) -> str:
    try:
        msg = str(e)
    except BaseException as e2:  # noqa: BLE001 - a hostile __str__
        if isinstance(e2, _PASS):
            raise
        msg = ""
    return f"{type(e).__name__}: {msg[:200]}" if msg else type(e).__name__


def _sum_atomic(items: Any, types: Any, n: int) -> int:
    """sys.getsizeof summed over items, all of exact atomic types (n: their
    number, or -1 when unknown).  One type: its own __sizeof__ (what getsizeof
    calls, without the lookup: 4x faster) or its fixed size."""
    if len(types) == 1:
        (t,) = types
        if t in _FIXED_SIZE:
            if n < 0:
                n = sum(1 for _ in items)
            return n * t.__basicsize__
        return sum(map(t.__sizeof__, items))
    return sum(map(sys.getsizeof, items))


def _walk(root: Any, bad: list[tuple[str, str]]) -> tuple[int, bool]:
    """(bytes, immutable) of root; unsizable objects appended to bad."""
    getsizeof = sys.getsizeof
    getrefcount = sys.getrefcount
    one = _ONE_REF_LOOP
    one_map = _ONE_REF_MAP
    atomic_types = _ATOMIC_TYPES
    seen: dict[int, Any] = {}  # id -> object (kept alive: its id stays unique)
    atoms = 0  # atomic entries in seen
    total = 0
    immutable = True
    # Iterators over children, and whether each yields atomic objects only.
    stack: list[Any] = [iter((root,))]
    flat: list[Any] = [None]  # per iterator: the set of its item types when all atomic

    def chunked(items: Any, ts: Any) -> None:
        """A large container of atomic items of which some are shared (a
        list of ints holds the interpreter's cached small ints, a list of
        strings interned ones): summed _CHUNK items at a time at C speed,
        walking item by item only the chunks that hold a shared one.  A
        chunk is a tuple: it holds each item once more."""
        nonlocal total, atoms
        it = iter(items)
        while True:
            chunk = tuple(islice(it, _CHUNK))
            if not chunk:
                return
            if atoms >= ATOM_IDS_MAX or (
                    sum(map(getrefcount, chunk)) == len(chunk) * (one_map + 1)):
                total += _sum_atomic(chunk, ts, len(chunk))
                continue
            for x in chunk:
                if getrefcount(x) > one + 1 and atoms < ATOM_IDS_MAX:
                    i = id(x)
                    if i in seen:
                        continue
                    seen[i] = x
                    atoms += 1
                total += getsizeof(x)

    def push(items: Any, n: int) -> None:
        """Walk an iterable of n children (a container's items): summed at C
        speed when they are all atomic and unshared, else stacked."""
        nonlocal total, immutable
        if n >= _BULK_MIN:
            ts = set(map(type, items))
            if ts <= atomic_types:
                if ts & _MUTABLE_ATOMIC:
                    immutable = False
                # Every item has >= one_map references: the sum is n * one_map
                # exactly when none has more (none is shared).
                if atoms >= ATOM_IDS_MAX or sum(map(getrefcount, items)) == n * one_map:
                    total += _sum_atomic(items, ts, n)
                    return
                if n >= 2 * _CHUNK:
                    chunked(items, ts)
                    return
                stack.append(iter(items))
                flat.append(ts)
                return
        stack.append(iter(items))
        flat.append(None)

    while stack:
        it = stack[-1]
        all_atomic = flat[-1]
        try:
            for x in it:
                t = type(x)
                if t in atomic_types:
                    if getrefcount(x) > one:
                        if atoms < ATOM_IDS_MAX:
                            i = id(x)
                            if i in seen:
                                continue
                            seen[i] = x
                            atoms += 1
                        elif all_atomic is not None:  # no more ids kept: the rest at C speed
                            total += getsizeof(x) + _sum_atomic(it, all_atomic, -1)
                            break
                    if t in _MUTABLE_ATOMIC:
                        immutable = False
                    total += getsizeof(x)
                    continue
                if getrefcount(x) > one:
                    i = id(x)
                    if i in seen:
                        continue
                    seen[i] = x
                try:
                    if t in _SEQ_TYPES:
                        total += getsizeof(x)
                        if t not in _IMMUTABLE_SEQ:
                            immutable = False
                        push(x, len(x))
                        break
                    if t is dict:
                        immutable = False
                        total += getsizeof(x)
                        push(x.keys(), len(x))
                        push(x.values(), len(x))
                        break
                    # Anything else may run code of its own in __sizeof__.
                    immutable = False
                    n = getsizeof(x)
                    if type(n) is not int or not 0 <= n <= SIZE_MAX:
                        raise ValueError(f"__sizeof__ gave {n!r} bytes (more than the "
                                         f"address space)")
                    total += n
                    if issubclass(t, _ATOMIC) or issubclass(t, type):
                        continue  # references nothing the state owns / classes are shared
                    if issubclass(t, dict):
                        push(dict.keys(x), dict.__len__(x))
                        push(dict.values(x), dict.__len__(x))
                        break
                    if issubclass(t, _SEQ_BASES):
                        base = next(b for b in _SEQ_BASES if issubclass(t, b))
                        push(base.__iter__(x), 0)  # item by item: no copy
                        break
                    if issubclass(t, Mapping):
                        kv: list[Any] = []
                        for k, v in x.items():
                            kv.append(k)
                            kv.append(v)
                        push(kv, len(kv))
                        break
                    kids: list[Any] = []
                    if t.__dictoffset__:
                        d = x.__dict__
                        if type(d) is dict:
                            kids.append(d)
                    for cls in t.__mro__:
                        cd = cls.__dict__
                        if "__slots__" in cd:
                            for desc in cd.values():
                                if type(desc) is MemberDescriptorType:
                                    try:
                                        kids.append(desc.__get__(x, cls))
                                    except AttributeError:  # an unset slot
                                        pass
                    if kids:
                        push(kids, len(kids))
                        break
                except BaseException as e:  # noqa: BLE001 - counted, never raised
                    if isinstance(e, _PASS):
                        raise
                    bad.append((_type_name(t), _reason(e)))
            else:
                stack.pop()
                flat.pop()
        except BaseException as e:  # noqa: BLE001 - iterating a container failed
            if isinstance(e, _PASS):
                raise
            bad.append(("iteration", _reason(e)))
            stack.pop()
            flat.pop()
    return total, immutable


def measure(obj: Any) -> Measure:
    """Bytes, items and unsizable parts of obj; raises only KeyboardInterrupt
    and SystemExit (as raised inside the walk)."""
    t = type(obj)
    if t in _ATOMIC_TYPES:
        # A number or string (most channels after most supersteps): its own
        # size, without the walk's set-up.
        return Measure(sys.getsizeof(obj), 1, [], t not in _MUTABLE_ATOMIC)
    bad: list[tuple[str, str]] = []
    try:
        size, immutable = _walk(obj, bad)
    except BaseException as e:  # noqa: BLE001 - a bug of the walk itself: still never raised
        if isinstance(e, _PASS):
            raise
        bad.append(("state tracking", _reason(e)))
        size, immutable = 0, False
    return Measure(size, _count_items(obj, bad), bad, immutable)


def deep_sizeof(obj: Any) -> int:
    """Bytes held by obj and everything it references (each object once);
    parts that cannot be sized count 0 (see measure)."""
    return measure(obj).bytes


def _count_items(value: Any, bad: list[tuple[str, str]]) -> int:
    t = type(value)
    try:
        if t in _SEQ_TYPES or t is dict:
            return len(value)
        if issubclass(t, dict):
            return dict.__len__(value)
        for b in _SEQ_BASES:
            if issubclass(t, b):
                return b.__len__(value)
        if issubclass(t, Mapping):
            return len(value)
    except BaseException as e:  # noqa: BLE001 - counted, never raised
        if isinstance(e, _PASS):
            raise
        bad.append((_type_name(t), _reason(e)))
    return 1


def count_items(value: Any) -> int:
    """Entries of a container value (list, tuple, set, dict, deque); 1 otherwise."""
    return _count_items(value, [])


def state_size(state: Any) -> tuple[int, int]:
    """(bytes, items) of a state mapping, measured as the Debugger measures it."""
    if isinstance(state, Mapping):
        return (
            sum(deep_sizeof(v) for v in state.values()),
            sum(count_items(v) for v in state.values()),
        )
    return deep_sizeof(state), count_items(state)
