"""byoc-edge: the Python side of an SBC edge (Kamailio 5.6 + rtpengine + redis).

Sub-packages, by concern (``docs/architecture.md`` has one line per module):

* :mod:`routing.call`: the sans-I/O decisions of a call (request snapshot in, decision out).
* :mod:`routing.tables`: the routing tables in redis: types, keys, store, leases, admin.
* :mod:`routing.ops`: settings, rendering of the configs, the node's processes, secrets, TLS.
* :mod:`routing.monitor`: the monitor process (Prometheus exporter, gateway prober).
* :mod:`routing.cli`: ``edgectl``.
* :mod:`routing.kamailio`: the Kamailio adapter, the only code that imports ``KSR``.

Every error raised on purpose is a :class:`routing.errors.EdgeError`.  Importing this package
imports nothing else (Kamailio's workers import only what their routes use).
"""

from routing.errors import EdgeError

__all__ = ["EdgeError"]
