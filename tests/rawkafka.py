"""A producer as any non-Python client is one: librdkafka's own ``rd_kafka_produceva``
through ctypes, so header names are raw bytes (confluent-kafka-python encodes them from
``str``, which cannot write a name that is not UTF-8)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from bridge.devtools.mockcluster import load_librdkafka

_PRODUCER = 0
_END = 0
_TOPIC = 1
_PARTITION = 3
_VALUE = 4
_KEY = 5
_MSGFLAGS = 7
_TIMESTAMP = 8
_HEADER = 9
_F_COPY = 0x2


class _Memory(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Header(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("val", ctypes.c_void_p), ("size", ctypes.c_ssize_t)]


class _Union(ctypes.Union):
    _fields_ = [
        ("cstr", ctypes.c_char_p),
        ("i", ctypes.c_int),
        ("i32", ctypes.c_int32),
        ("i64", ctypes.c_int64),
        ("mem", _Memory),
        ("header", _Header),
        ("_pad", ctypes.c_char * 64),
    ]


class _VU(ctypes.Structure):
    """``rd_kafka_vu_t``: one typed argument of ``rd_kafka_produceva``."""

    _fields_ = [("vtype", ctypes.c_int), ("u", _Union)]


class RawProducer:
    """Writes records with raw header names (bytes without NUL), raw keys and values."""

    def __init__(self, bootstrap_servers: str, **settings: str) -> None:
        self._lib = lib = load_librdkafka()
        lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_VU), ctypes.c_size_t]
        lib.rd_kafka_produceva.restype = ctypes.c_void_p
        lib.rd_kafka_error_string.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_error_string.restype = ctypes.c_char_p
        lib.rd_kafka_error_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_flush.restype = ctypes.c_int
        conf = lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        for name, value in {"bootstrap.servers": bootstrap_servers, "log_level": "3", **settings}.items():
            if lib.rd_kafka_conf_set(conf, name.encode(), value.encode(), errstr, 512):
                raise RuntimeError(f"{name}: {errstr.value.decode()}")
        self._rk = lib.rd_kafka_new(_PRODUCER, conf, errstr, 512)
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[bytes, bytes | None]] = (),
        partition: int = -1,
        timestamp_ms: int = 0,
    ) -> None:
        keep: list[Any] = []  # the buffers must outlive the call (librdkafka copies them)
        args = [_VU(_TOPIC, _Union(cstr=topic.encode())), _VU(_PARTITION, _Union(i32=partition))]
        args.append(_VU(_MSGFLAGS, _Union(i=_F_COPY)))
        for vtype, data in ((_VALUE, value), (_KEY, key)):
            if data is not None:
                buffer = ctypes.create_string_buffer(data, len(data))
                keep.append(buffer)
                args.append(_VU(vtype, _Union(mem=_Memory(ctypes.cast(buffer, ctypes.c_void_p), len(data)))))
        if timestamp_ms:
            args.append(_VU(_TIMESTAMP, _Union(i64=timestamp_ms)))
        for name, data in headers:
            assert b"\x00" not in name, "a header name is a C string here"
            buffer = ctypes.create_string_buffer(data or b"", len(data or b""))
            keep.append(buffer)
            if data is None:  # a header without a value (size -1)
                header = _Header(name, None, -1)
            else:
                header = _Header(name, ctypes.cast(buffer, ctypes.c_void_p), len(data))
            args.append(_VU(_HEADER, _Union(header=header)))
        array = (_VU * len(args))(*args)
        error = self._lib.rd_kafka_produceva(self._rk, array, len(args))
        if error:
            message = self._lib.rd_kafka_error_string(error).decode()
            self._lib.rd_kafka_error_destroy(error)
            raise RuntimeError(f"produce failed: {message}")

    def flush(self, timeout_s: float = 10) -> None:
        if self._lib.rd_kafka_flush(self._rk, int(timeout_s * 1000)):
            raise RuntimeError("flush timed out")

    def close(self) -> None:
        if self._rk:
            self.flush()
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None
