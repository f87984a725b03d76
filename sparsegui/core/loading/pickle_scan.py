"""Read what a pickle would call, without running it, and refuse calls that make memory out of nothing.

torch's weights-only unpickler allows a few callables that allocate from a number in the file: ``bytearray(10**9)``
is 1 GB from a 500-byte pickle, ``_codecs.encode`` applied again and again doubles a string each time, calling a
storage or tensor class allocates its argument's size, and some rebuild functions copy or validate a tensor whose
size the file chooses (a sparse tensor's indices are scanned in full). :func:`scan_pickle` follows the pickle
machine's stack symbolically (each opcode's stack effect from :mod:`pickletools`), so it knows what each
``REDUCE``/``NEWOBJ`` calls and with what; :func:`check_calls` refuses the dangerous shapes. The same pass lists the
imports (for the trust question) and the bytes each tensor record must hold.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
from dataclasses import dataclass, field
from typing import IO, Any

import torch

from sparsegui.core.errors import LoadError


@dataclass(frozen=True)
class Sym:
    """What an item on the pickle stack is: its kind (``global``, ``int``, ``str``, ``tuple``, ``call``…) and,
    where known, its value (the global's name, the number, the string) and items (a tuple's)."""

    kind: str
    value: Any = None
    items: tuple[Sym, ...] = ()


MARK = Sym("mark")
OTHER = Sym("other")


@dataclass
class Scan:
    imports: list[str] = field(default_factory=list)
    calls: list[tuple[str, Sym]] = field(default_factory=list)
    storages: dict[str, int] = field(default_factory=dict)
    """Tensor record key → bytes the pickle asks of it (the largest, if asked several times)."""
    unresolved_storage: bool = False
    untyped_dtypes: list[str] = field(default_factory=list)
    """dtypes of tensors kept in untyped storages (float8, uint16…: the dtypes added after typed storages)."""


class _Malformed(Exception):
    pass


_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_STRS = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CONTAINERS = {"EMPTY_LIST": "list", "EMPTY_DICT": "dict", "EMPTY_SET": "set", "LIST": "list", "DICT": "dict",
               "FROZENSET": "set"}


def _global_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 names it (protocol 2 pickles say ``__builtin__.set``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _pop_to_mark(stack: list[Sym]) -> list[Sym]:
    items: list[Sym] = []
    while stack:
        top = stack.pop()
        if top is MARK:
            items.reverse()
            return items
        items.append(top)
    raise _Malformed


def _pop(stack: list[Sym], count: int = 1) -> list[Sym]:
    if len(stack) < count:
        raise _Malformed
    items = stack[len(stack) - count :]
    del stack[len(stack) - count :]
    return items


_STORAGE_BYTES = {f"torch.{name}": torch._utils._element_size(dtype)
                  for dtype, name in torch.storage._dtype_to_storage_type_map().items()}
_STORAGE_BYTES["torch.storage.UntypedStorage"] = 1


def _record_storage(scan: Scan, pid: Sym) -> None:
    """Note the bytes a persistent id (``("storage", type, key, location, numel[, view])``) asks of its record."""
    fields = pid.items
    if pid.kind != "tuple" or not fields or fields[0].value != "storage":
        scan.unresolved_storage = True
        return
    if len(fields) < 5 or fields[2].kind != "str" or fields[4].kind != "int" or fields[1].kind != "global":
        scan.unresolved_storage = True
        return
    element = _STORAGE_BYTES.get(str(fields[1].value))
    if element is None:
        scan.unresolved_storage = True
        return
    key, nbytes = str(fields[2].value), int(fields[4].value) * element
    scan.storages[key] = max(scan.storages.get(key, 0), nbytes)


def _step(name: str, arg: Any, op: pickletools.OpcodeInfo, stack: list[Sym], memo: dict[Any, Sym],
          scan: Scan) -> None:
    """Apply one opcode's effect to the symbolic stack."""
    push = stack.append
    if name in _INTS:
        push(Sym("int", int(arg)) if isinstance(arg, int) and not isinstance(arg, bool) else Sym("bool"))
    elif name in _STRS:
        push(Sym("str", arg.decode("latin-1") if isinstance(arg, bytes) else arg))
    elif name in _BYTES:
        push(Sym("bytes", len(arg)))
    elif name == "MARK":
        push(MARK)
    elif name == "MEMOIZE":
        if not stack:
            raise _Malformed
        memo[len(memo)] = stack[-1]
    elif name in ("NEWFALSE", "NEWTRUE"):
        push(Sym("bool"))
    elif name == "DUP":
        push(_pop(stack)[0])
        push(stack[-1])
    elif name == "TUPLE":
        push(Sym("tuple", items=tuple(_pop_to_mark(stack))))
    elif name in _TUPLES:
        push(Sym("tuple", items=tuple(_pop(stack, _TUPLES[name]))))
    elif name == "EMPTY_TUPLE":
        push(Sym("tuple"))
    elif name in ("GLOBAL", "INST"):
        module, _, attr = str(arg).partition(" ")
        target = _global_name(module, attr)
        scan.imports.append(target)
        if name == "INST":
            scan.calls.append((target, Sym("tuple", items=tuple(_pop_to_mark(stack)))))
            push(Sym("call", target))
        else:
            push(Sym("global", target))
    elif name == "STACK_GLOBAL":
        module_sym, attr_sym = _pop(stack, 2)
        if module_sym.kind == attr_sym.kind == "str":
            target = _global_name(str(module_sym.value), str(attr_sym.value))
            scan.imports.append(target)
            push(Sym("global", target))
        else:
            push(OTHER)
    elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
        if name == "OBJ":
            items = _pop_to_mark(stack)
            if not items:
                raise _Malformed
            func, args = items[0], Sym("tuple", items=tuple(items[1:]))
        else:
            popped = _pop(stack, 3 if name == "NEWOBJ_EX" else 2)
            func, args = popped[0], popped[1]
        if func.kind == "global":
            scan.calls.append((str(func.value), args))
            if func.value == "torch._utils._rebuild_tensor_v3" and len(args.items) > 6:
                scan.untyped_dtypes.append(str(args.items[6].value))
        push(Sym("call", func.value if func.kind == "global" else None))
    elif name == "BINPERSID":
        pid = _pop(stack)[0]
        _record_storage(scan, pid)
        push(Sym("storage"))
    elif name in _CONTAINERS:
        if name in ("LIST", "DICT", "FROZENSET"):
            _pop_to_mark(stack)
        push(Sym(_CONTAINERS[name]))
    else:
        _generic(op, stack)


def _generic(op: pickletools.OpcodeInfo, stack: list[Sym]) -> None:
    """Any other opcode: pop what it consumes (to the mark where it takes a slice), push unknowns for its results;
    an opcode that changes a container in place (APPEND, SETITEMS, BUILD…) leaves that container as it was."""
    before = op.stack_before
    container: Sym | None = None
    if pickletools.stackslice in before:
        _pop_to_mark(stack)
        plain = [s for s in before if s not in (pickletools.stackslice, pickletools.markobject)]
        popped = _pop(stack, len(plain))
    else:
        popped = _pop(stack, len(before))
    if popped and op.stack_after and len(op.stack_after) == 1 and op.name in (
        "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"
    ):
        container = popped[0]
    for _ in op.stack_after:
        stack.append(container or OTHER)


def scan_pickle(data: bytes | IO[bytes], max_streams: int = 1) -> Scan:
    """Follow up to ``max_streams`` consecutive pickles in ``data``; stops quietly where a stream is malformed (the
    real unpickler stops there too)."""
    handle = io.BytesIO(data) if isinstance(data, bytes) else data
    scan = Scan()
    for _ in range(max_streams):
        stack: list[Sym] = []
        memo: dict[Any, Sym] = {}
        finished = False
        try:
            for op, arg, _pos in pickletools.genops(handle):
                name = op.name
                if name in _PUTS:  # the commonest opcodes first: a state_dict's pickle is mostly memo traffic
                    if not stack:
                        raise _Malformed
                    memo[arg] = stack[-1]
                elif name in _GETS:
                    stack.append(memo.get(arg, OTHER))
                elif name == "STOP":
                    finished = True
                    break
                elif name not in ("PROTO", "FRAME"):
                    _step(name, arg, op, stack, memo, scan)
        except (_Malformed, ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError):
            break
        if not finished:
            break
    scan.imports = list(dict.fromkeys(scan.imports))
    return scan


# -- what is refused --------------------------------------------------------------------------------------------------

_SAFE_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "ascii", "utf-8", "utf8"}
_REFUSED = {
    "torch._utils._rebuild_sparse_tensor": "a sparse tensor (validating it reads sizes the file chooses)",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "a tensor converted for another device",
    "torch._utils._rebuild_device_tensor_from_numpy": "a tensor converted for another device",
    "torch._utils._rebuild_wrapper_subclass": "a tensor subclass without stored data",
}


def _tensor_makers() -> set[str]:
    names = {"torch.Tensor"}
    for cls in (*torch._storage_classes, *torch._tensor_classes):
        names.add(f"{cls.__module__}.{cls.__name__}")
    return names


_MAKERS = _tensor_makers()


def _call_problem(name: str, args: Sym, depth: int = 0) -> str | None:
    items = args.items if args.kind == "tuple" else None
    if name == "builtins.bytearray":
        first = items[0] if items else None
        if items is None or len(items) > 2 or (first is not None and not (
            first.kind in ("bytes", "str") or (first.kind == "call" and first.value == "_codecs.encode")
        )):
            return "calls bytearray() with a size or an unknown value"
    elif name == "_codecs.encode":
        if items is None or len(items) != 2 or items[0].kind != "str" or items[1].kind != "str" or str(
            items[1].value
        ).lower() not in _SAFE_ENCODINGS:
            return "calls _codecs.encode() on something other than a string to bytes"
    elif name in _MAKERS:
        return f"calls {name}() to make data the file does not store"
    elif name in _REFUSED:
        return f"holds {_REFUSED[name]} ({name})"
    elif name == "torch._tensor._rebuild_from_type_v2" and items and len(items) >= 3:
        inner = items[0]  # _rebuild_from_type_v2(func, type, args, state) calls func(*args)
        if inner.kind != "global":
            return "rebuilds a tensor with a function the scan cannot name"
        if depth >= 4:  # torch.save nests it once
            return "nests _rebuild_from_type_v2 calls"
        return _call_problem(str(inner.value), items[2], depth + 1)
    return None


def check_calls(scan: Scan, filename: str) -> None:
    """Refuse a pickle that calls an allowed callable in a way that allocates memory the file does not hold."""
    for name, args in scan.calls:
        problem = _call_problem(name, args)
        if problem:
            raise LoadError(f"{filename}: its pickle {problem}; refused")
