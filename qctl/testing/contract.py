"""The contract every backend must pass, as a reusable pytest test class.

A backend package (qctl's own or a third party's) subclasses ``BackendContract`` in its
tests and provides three fixtures: the settings of a live cluster, settings that point
at a closed port, and the backend's name. The tests load the backend through its
installed entry point, exactly as qctl does, so a missing or broken registration fails
here rather than in a user's shell.

Example::

    from qctl.testing.contract import BackendContract

    class TestMyBackendContract(BackendContract):
        backend_name = "mybackend"

        @pytest.fixture
        def live_settings(self):
            return {"url": "mq://localhost:1234"}

        @pytest.fixture
        def unreachable_settings(self):
            return {"url": "mq://127.0.0.1:1"}
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from qctl.backends import CAPABILITIES
from qctl.backends.base import Backend, BackendConfig, ClusterInfo, SupportsClusterInfo
from qctl.config import SECRETS
from qctl.errors import ExitCode, QctlError, UnreachableError
from qctl.plugins import load_backend

#: The bound used for the unreachable-cluster checks.
CONTRACT_TIMEOUT = 3.0


class BackendContract:
    """Subclass and provide ``backend_name``, ``live_settings`` and ``unreachable_settings``."""

    backend_name: ClassVar[str]

    @pytest.fixture
    def live_settings(self) -> Mapping[str, Any]:
        raise NotImplementedError("provide the settings of a running cluster")

    @pytest.fixture
    def unreachable_settings(self) -> Mapping[str, Any]:
        raise NotImplementedError("provide settings that point at a closed port")

    def make(self, settings: Mapping[str, Any], timeout: float = CONTRACT_TIMEOUT) -> Backend:
        cls = load_backend(self.backend_name)
        return cls.from_config(
            BackendConfig(context="contract", settings=settings, timeout=timeout)
        )

    # -- registration ----------------------------------------------------------------------
    def test_loads_through_its_entry_point(self) -> None:
        cls = load_backend(self.backend_name)
        assert cls.name == self.backend_name

    def test_implements_the_backend_protocol(self, unreachable_settings: Mapping[str, Any]) -> None:
        backend = self.make(unreachable_settings)
        assert isinstance(backend, Backend)
        backend.close()

    def test_declared_capabilities_are_complete(self) -> None:
        """A class that defines some methods of a capability must define all of them."""
        cls = load_backend(self.backend_name)
        for name, proto in CAPABILITIES.items():
            members = [
                m
                for m in vars(proto)
                if not m.startswith("_") and callable(getattr(proto, m, None))
            ]
            present = [m for m in members if callable(getattr(cls, m, None))]
            assert not present or len(present) == len(members), (
                f"{cls.__name__} implements only part of {name}: missing "
                f"{sorted(set(members) - set(present))}"
            )

    # -- connection behaviour --------------------------------------------------------------
    def test_construction_does_not_touch_the_network(
        self, unreachable_settings: Mapping[str, Any]
    ) -> None:
        start = time.monotonic()
        backend = self.make(unreachable_settings, timeout=30)
        backend.close()
        assert time.monotonic() - start < 1.0

    def test_unreachable_cluster_fails_with_exit_3_within_the_bound(
        self, unreachable_settings: Mapping[str, Any]
    ) -> None:
        backend = self.make(unreachable_settings)
        if not isinstance(backend, SupportsClusterInfo):
            pytest.skip("backend has no cluster-info capability")
        start = time.monotonic()
        with pytest.raises(UnreachableError) as caught:
            backend.cluster_info()
        elapsed = time.monotonic() - start
        backend.close()
        assert caught.value.exit_code == ExitCode.UNREACHABLE
        assert elapsed < CONTRACT_TIMEOUT + 2.0
        message = str(caught.value)
        assert backend.target() in message, "the error must name the address"
        assert "\n" not in message, "errors are one line"

    def test_close_is_idempotent(self, live_settings: Mapping[str, Any]) -> None:
        backend = self.make(live_settings)
        if isinstance(backend, SupportsClusterInfo):
            backend.cluster_info()
        backend.close()
        backend.close()

    # -- live cluster ----------------------------------------------------------------------
    def test_cluster_info_of_a_live_cluster(self, live_settings: Mapping[str, Any]) -> None:
        backend = self.make(live_settings, timeout=10)
        if not isinstance(backend, SupportsClusterInfo):
            pytest.skip("backend has no cluster-info capability")
        try:
            info = backend.cluster_info()
        finally:
            backend.close()
        assert isinstance(info, ClusterInfo)
        assert info.reachable
        assert info.backend == self.backend_name
        assert info.version, "a reachable cluster reports its version"
        assert info.nodes, "a reachable cluster has at least one node"
        assert all(isinstance(v, int) and v >= 0 for v in info.counts.values())

    def test_target_and_errors_never_show_secrets(self, live_settings: Mapping[str, Any]) -> None:
        backend = self.make(live_settings)
        target = backend.target()
        backend.close()
        assert SECRETS.scrub(target) == target

    def test_errors_are_qctl_errors(self, unreachable_settings: Mapping[str, Any]) -> None:
        backend = self.make(unreachable_settings)
        if not isinstance(backend, SupportsClusterInfo):
            pytest.skip("backend has no cluster-info capability")
        try:
            backend.cluster_info()
        except QctlError:
            pass
        else:  # pragma: no cover - the cluster is unreachable by construction
            pytest.fail("cluster_info() succeeded against an unreachable address")
        finally:
            backend.close()
