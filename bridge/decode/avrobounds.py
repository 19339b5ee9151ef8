"""Bounds on what one Avro record can make the reader do.

fastavro's C reader recurses in C for each nested value and trusts the item counts
it reads: a recursive schema with 30,000 levels of data overflows the C stack (the
process dies with SIGSEGV), and an array of ``null`` items with a count of 2^40 (six
bytes) builds a list of 2^40 items. A schema is *bounded* when neither can happen:
it is not recursive, nests at most ``max_depth`` records, arrays and maps, and has no
array of zero-size items (``null``, a record of nothing but such fields, a fixed of
size 0). Records of a bounded schema go straight to the C reader; the others are first
walked here, in Python, under the depth bound and with every block's item count checked
against the bytes left (zero-size items: at most :data:`MAX_ZERO_SIZE_ITEMS` per record),
so the C reader only ever sees what fits. A record that breaks a bound raises
:class:`~bridge.errors.DecodeError` saying which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.errors import DecodeError

DEFAULT_MAX_DEPTH = 64
MAX_ZERO_SIZE_ITEMS = 10_000  # items of a zero-size type in one record (they take no bytes)

_FIXED_SIZE = {"boolean": 1, "float": 4, "double": 8}
_VARINT = frozenset({"int", "long", "enum"})
_LENGTH_PREFIXED = frozenset({"bytes", "string"})

Walk = Callable[[bytes, int], None]


_RECORDS = frozenset({"record", "error"})  # fastavro reads an ``error`` as a record


class _Shape:
    """What the schema allows, found once when it is parsed (each named type once: a
    schema that names a type in many places is not walked again for each)."""

    def __init__(self, schema: Any) -> None:
        self.named: dict[str, Any] = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
        self.recursive = False
        self.zero_size_arrays = False
        self._depths: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._open: set[str] = set()  # named types being measured: met again, the schema recurses
        self.depth = self._depth(schema)

    def resolve(self, node: Any) -> Any:
        while isinstance(node, str) and node in self.named:
            node = self.named[node]
        if isinstance(node, dict) and not isinstance(node.get("type"), str):
            return self.resolve(node["type"])  # {"type": {...}} or {"type": [...]}
        return node

    def type_of(self, node: Any) -> str:
        node = self.resolve(node)
        if isinstance(node, list):
            return "union"
        kind = str(node["type"] if isinstance(node, dict) else node)
        return "record" if kind in _RECORDS else kind

    def _name(self, node: Any) -> str | None:
        if isinstance(node, str):
            return node if node in self.named else None
        resolved = self.resolve(node)
        named = isinstance(resolved, dict) and self.type_of(resolved) == "record"
        return str(resolved["name"]) if named else None

    def _depth(self, node: Any) -> int:
        name = self._name(node)
        if name is not None:
            if name in self._open:
                self.recursive = True
                return 0
            if name not in self._depths:
                self._open.add(name)
                self._depths[name] = self._measure_depth(self.resolve(node))
                self._open.discard(name)
            return self._depths[name]
        return self._measure_depth(self.resolve(node))

    def _measure_depth(self, node: Any) -> int:
        if isinstance(node, list):
            return max((self._depth(branch) for branch in node), default=0)
        kind = self.type_of(node)
        if kind == "record":
            return 1 + max((self._depth(f["type"]) for f in node["fields"]), default=0)
        if kind == "array":
            if self.min_size(node["items"]) == 0:
                self.zero_size_arrays = True
            return 1 + self._depth(node["items"])
        if kind == "map":
            return 1 + self._depth(node["values"])
        return 0

    def min_size(self, node: Any) -> int:
        """The fewest bytes a value of this type takes."""
        name = self._name(node)
        if name is not None and name in self._sizes:
            return self._sizes[name]
        if name is not None:
            self._sizes[name] = 0  # a type within itself: only through a union, array or map,
            # which count their own byte
        node = self.resolve(node)
        kind = self.type_of(node)
        if kind == "null":
            size = 0
        elif kind == "fixed":
            size = int(node["size"])
        elif kind == "record":
            size = sum(self.min_size(f["type"]) for f in node["fields"])
        else:
            size = _FIXED_SIZE.get(kind, 1)  # varints, length prefixes, union indexes, block counts
        if name is not None:
            self._sizes[name] = size
        return size


def bounded_walk(schema: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> Walk | None:
    """The walk records of ``schema`` need before the C reader, or None when it is bounded."""
    shape = _Shape(schema)
    if not shape.recursive and not shape.zero_size_arrays and shape.depth <= max_depth:
        return None
    return lambda data, offset: _Walker(shape, data, offset, max_depth).value(schema, 0)


class _Walker:
    """One record's walk: every value skipped over, nothing built."""

    def __init__(self, shape: _Shape, data: bytes, offset: int, max_depth: int) -> None:
        self.shape = shape
        self.data = data
        self.pos = offset
        self.max_depth = max_depth
        self.zero_size_items = 0

    def varint(self) -> int:
        result = shift = 0
        data, pos = self.data, self.pos
        while True:
            if pos >= len(data):
                raise DecodeError("bytes do not decode with the Avro schema: they end inside a number")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise DecodeError("bytes do not decode with the Avro schema: a number longer than 10 bytes")
        self.pos = pos
        return (result >> 1) ^ -(result & 1)

    def skip(self, size: int) -> None:
        if size < 0 or size > len(self.data) - self.pos:
            raise DecodeError(
                f"bytes do not decode with the Avro schema: a length of {size} with "
                f"{len(self.data) - self.pos} bytes left"
            )
        self.pos += size

    def value(self, node: Any, depth: int) -> None:
        shape = self.shape
        node = shape.resolve(node)
        kind = shape.type_of(node)
        if kind == "null":
            return
        if kind in _VARINT:
            self.varint()
        elif kind in _LENGTH_PREFIXED:
            self.skip(self.varint())
        elif kind in _FIXED_SIZE:
            self.skip(_FIXED_SIZE[kind])
        elif kind == "fixed":
            self.skip(int(node["size"]))
        elif kind == "union":
            index = self.varint()
            if not 0 <= index < len(node):
                raise DecodeError(
                    f"bytes do not decode with the Avro schema: union branch {index} of {len(node)}"
                )
            self.value(node[index], depth)
        else:
            if depth >= self.max_depth:
                raise DecodeError(
                    f"Avro value nested deeper than {self.max_depth} levels (source.avro_max_depth)"
                )
            if kind == "record":
                for field in node["fields"]:
                    self.value(field["type"], depth + 1)
            else:
                self.blocks(node, kind == "map", depth + 1)

    def blocks(self, node: Any, is_map: bool, depth: int) -> None:
        items = node["values" if is_map else "items"]
        item_size = self.shape.min_size(items) + is_map  # a map's key takes a byte at least
        while count := self.varint():
            if count < 0:
                count = -count
                self.varint()  # the block's size in bytes
            left = len(self.data) - self.pos
            if item_size == 0:
                self.zero_size_items += count
                if self.zero_size_items > MAX_ZERO_SIZE_ITEMS:
                    raise DecodeError(
                        f"Avro array of {self.zero_size_items} zero-size items, over {MAX_ZERO_SIZE_ITEMS}"
                    )
            elif count * item_size > left:
                raise DecodeError(
                    f"bytes do not decode with the Avro schema: a block of {count} items "
                    f"with {left} bytes left"
                )
            for _ in range(count):
                if is_map:
                    self.skip(self.varint())
                self.value(items, depth)
