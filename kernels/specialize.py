"""One loop, many kernels: a template's decoder names bound per kernel, each cached on its own.

A template is a plain module function that calls its decoders by global names
declared with :class:`Hook` (``_dot = Hook("...")``). :func:`specialize` copies
it with those names bound and a name of its own, and jits the copy. Numba then
compiles the decoders as direct calls (inlined where they are
``inline='always'``), exactly as if the loop had been written out per type.

Why not a closure or a function argument: Numba keys a closure's cache entry by
pickling the closed-over values, and a jitted function pickles with a random id
that is new in every process; a jitted-function argument is part of the
signature in the same way. Either kind of kernel compiles again in every
process and adds a data file to the cache each time. A copy with bound
globals is keyed like any module function: its own index file (named after
the kernel), loaded by the next process.

Numba checks a cached kernel against the source file of its function, which for
a copy is the template's file. :func:`specialize` adds the files of the bound
functions (and of the functions bound into those) and the values of bound
constants to that check, so editing a decoder recompiles the kernels made from it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import types
from collections.abc import Callable, Mapping
from typing import Any

from numba import njit

_SOURCES = "_gptoss_sources"  # attribute of a copy: files its bound functions come from
_MADE: set[tuple[str, str]] = set()


class Hook:
    """A global name of a template that :func:`specialize` binds; calling it unbound is an error."""

    def __init__(self, doc: str) -> None:
        self.doc = doc

    def __repr__(self) -> str:
        return f"Hook({self.doc!r})"

    def __call__(self, *args: Any) -> Any:
        raise TypeError(f"template hook called unbound ({self.doc}); use the kernel made by specialize()")


def specialize(template: Callable, name: str, hooks: Mapping[str, Any], **options: Any) -> Callable:
    """``njit(cache=True, **options)`` of a copy of ``template`` named ``name`` with ``hooks`` bound.

    Every hook the template declares must be bound, and ``name`` must be new for
    the template's file (it names the cache files).
    """
    declared = {k for k in template.__code__.co_names if isinstance(template.__globals__.get(k), Hook)}
    if set(hooks) != declared:
        raise TypeError(f"{template.__qualname__} binds {sorted(declared)}, got {sorted(hooks)}")
    code = template.__code__.replace(co_name=name, co_qualname=name)
    key = (code.co_filename, name)
    if key in _MADE:
        raise ValueError(f"a kernel named {name!r} was already made from {os.path.basename(code.co_filename)}")
    _MADE.add(key)
    fn = types.FunctionType(code, {**template.__globals__, **hooks}, name, template.__defaults__)
    fn.__qualname__ = name
    fn.__doc__ = template.__doc__
    files = _hook_files(hooks)
    setattr(fn, _SOURCES, files)
    kernel = njit(cache=True, **options)(fn)
    _extend_source_stamp(kernel, _fingerprint(hooks, files))
    return kernel


def _function_of(value: Any) -> Callable | None:
    """The Python function behind a bound value: a dispatcher's, an intrinsic's, or itself."""
    for attr in ("py_func", "_defn"):
        inner = getattr(value, attr, None)
        if inspect.isfunction(inner):
            return inner
    return value if inspect.isfunction(value) else None


def _hook_files(hooks: Mapping[str, Any]) -> frozenset[str]:
    files: set[str] = set()
    for value in hooks.values():
        fn = _function_of(value)
        if fn is not None:
            files.add(fn.__code__.co_filename)
            files.update(getattr(fn, _SOURCES, ()))
    return frozenset(files)


def _fingerprint(hooks: Mapping[str, Any], files: frozenset[str]) -> str:
    h = hashlib.sha256()
    for key in sorted(hooks):
        fn = _function_of(hooks[key])
        bound = f"{fn.__module__}.{fn.__qualname__}" if fn else repr(hooks[key])
        h.update(f"{key}={bound};".encode())
    for path in sorted(files):
        st = os.stat(path)
        h.update(path.encode() + _file_digest(path, st.st_mtime_ns, st.st_size))
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> bytes:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def _extend_source_stamp(kernel: Any, fingerprint: str) -> None:
    """Make the kernel's cache index stale when ``fingerprint`` changes (not only its template's file).

    Uses Numba's cache internals (the index file's source stamp); where they
    differ, the template's file alone is checked, as for any Numba function.
    """
    index = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
    if index is not None and hasattr(index, "_source_stamp"):
        index._source_stamp = (index._source_stamp, fingerprint)
