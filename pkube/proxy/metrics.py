"""kube-proxy's metrics (docs/metrics.md), served on --metrics-bind-address (127.0.0.1:10249
by default, plain HTTP, as kube-proxy): how long each write of the nftables table took, and
when the last one ended."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, Histogram

# kube-proxy's: 1 ms doubling to ~16 s
SYNC_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))


class ProxyMetrics:
    """kubeproxy_sync_proxy_rules_duration_seconds and _last_timestamp_seconds in ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        self.duration = Histogram("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in "
                                  "seconds", buckets=SYNC_BUCKETS, registry=registry)
        self.last = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules "
                          "were successfully synced", registry=registry)

    def synced(self, seconds: float) -> None:
        """One sync of the table (whole or incremental) ended after ``seconds``."""
        self.duration.observe(seconds)
        self.last.set(time.time())
