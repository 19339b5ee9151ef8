"""A real Kafka-protocol cluster for tests and the demo, from librdkafka.

The confluent-kafka wheel bundles librdkafka, which contains a mock cluster
that speaks the Kafka protocol on loopback TCP. This module binds the few
calls we need with ctypes. Any producer or consumer, in any process, reaches
the cluster through :attr:`MockCluster.bootstrap_servers`.

Known quirks of the mock: AdminClient CreateTopics times out (use
:meth:`MockCluster.create_topic`), timestamp look-ups answer the end offset,
and a member that closes is forgotten only after ``session.timeout.ms``.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import confluent_kafka

_RD_KAFKA_PRODUCER = 0


def load_librdkafka() -> ctypes.CDLL:
    package_dir = os.path.dirname(confluent_kafka.__file__)
    candidates = sorted(glob.glob(os.path.join(package_dir + ".libs", "librdkafka*.so*")))
    candidates += sorted(glob.glob(os.path.join(package_dir, ".dylibs", "librdkafka*.dylib")))
    if not candidates:
        raise RuntimeError("librdkafka not found beside the confluent_kafka package")
    lib = ctypes.CDLL(candidates[0])
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int16,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.rd_kafka_mock_clear_request_errors.argtypes = [ctypes.c_void_p, ctypes.c_int16]
    lib.rd_kafka_mock_broker_set_down.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_down.restype = ctypes.c_int
    lib.rd_kafka_mock_broker_set_up.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.restype = ctypes.c_int
    lib.rd_kafka_mock_start_request_tracking.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_get_requests.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
    lib.rd_kafka_mock_get_requests.restype = ctypes.POINTER(ctypes.c_void_p)
    lib.rd_kafka_mock_request_api_key.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_request_api_key.restype = ctypes.c_int16
    lib.rd_kafka_mock_request_destroy_array.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    lib.rd_kafka_mock_clear_requests.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    return lib


class MockCluster:
    """A librdkafka mock cluster listening on loopback; close it when done."""

    def __init__(self, brokers: int = 1) -> None:
        self._lib = load_librdkafka()
        conf = self._lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        # The handle that owns the cluster must not try to reach a real broker.
        self._lib.rd_kafka_conf_set(conf, b"client.id", b"mock-cluster-owner", errstr, 512)
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, 512)
        self._rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, 512)
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._cluster = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            self._lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.bootstrap_servers: str = self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()
        self._tracking = False

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        err = self._lib.rd_kafka_mock_topic_create(self._cluster, name.encode(), partitions, replication)
        self._check(err, f"create topic {name}")

    def push_request_errors(self, api_key: int, errors: Sequence[int]) -> None:
        """Make the next requests of one Kafka API fail with these error codes, in order."""
        array = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(self._cluster, api_key, len(errors), array)

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster, api_key)

    def requests(self) -> Counter[int]:
        """The requests the brokers received since the last call, per API key (the
        first call starts counting)."""
        if not self._tracking:
            self._lib.rd_kafka_mock_start_request_tracking(self._cluster)
            self._tracking = True
        count = ctypes.c_size_t()
        array = self._lib.rd_kafka_mock_get_requests(self._cluster, ctypes.byref(count))
        keys = Counter(self._lib.rd_kafka_mock_request_api_key(array[i]) for i in range(count.value))
        self._lib.rd_kafka_mock_request_destroy_array(array, count)
        self._lib.rd_kafka_mock_clear_requests(self._cluster)
        return keys

    def set_broker_down(self, broker_id: int) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker_id), "broker down")

    def set_broker_up(self, broker_id: int) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker_id), "broker up")

    def close(self) -> None:
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._cluster = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check(self, err: int, what: str) -> None:
        if err:
            raise RuntimeError(f"{what}: {self._lib.rd_kafka_err2str(err).decode()}")
