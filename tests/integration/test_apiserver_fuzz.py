"""The apiserver fuzzed (issue 12): a seeded, bounded run of requests drawn from the hypothesis
strategies of tests/helpers/fuzzing.py (manifests of every kind, query strings, headers, content
types, JSON / merge / strategic / apply patches, malformed bodies: deep nesting, huge strings,
unicode, NULs, YAML bombs) and raw bytes on the socket, against a real apiserver process on a
real etcd. No answer is a 5xx, none takes longer than the bound, the process never dies, a
rejected request (or a dry run) stores nothing, and its memory stays flat. `make fuzz`
(bench/fuzz.py) runs the long version, with schemathesis cases from the served OpenAPI."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzzing import RAW_REQUESTS, Fuzzer, Target, request_classes

BATCH = 10                 # requests drawn per hypothesis example
EXAMPLES = 200             # 2,000 requests: 1-2.5 min here
MEMORY_GROWTH = 64 * 1024 ** 2   # bytes the apiserver may grow by after its warm-up


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    started = Target(tmp_path_factory.mktemp("fuzz")).start()
    try:
        yield started
    finally:
        started.stop()


def run(fuzzer: Fuzzer, examples: int, seed_every: int = 25) -> None:
    """Send ``examples`` x BATCH requests, drawn deterministically; re-seed the objects that
    updates and patches aim at every ``seed_every`` examples."""
    classes = request_classes()
    count = [0]

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(st.data())
    def batch(data):
        if count[0] % seed_every == 0:
            fuzzer.target.seed(fuzzer.client)
        count[0] += 1
        for _ in range(BATCH):
            fuzzer.send(data.draw(classes[data.draw(st.integers(0, len(classes) - 1))]))

    batch()


def test_fuzzed_requests_get_no_5xx_no_hang_store_nothing_when_rejected_and_keep_memory_flat(target):
    fuzzer = Fuzzer(target)
    try:
        run(fuzzer, EXAMPLES // 4)
        warm = target.rss()
        run(fuzzer, EXAMPLES - EXAMPLES // 4)
        for data in RAW_REQUESTS:
            fuzzer.send_raw(data)
    finally:
        fuzzer.close()
    found = fuzzer.findings
    assert found.problems == [], "\n".join(found.problems[:20])
    assert found.sent >= EXAMPLES * BATCH
    assert target.alive()
    assert target.rss() - warm < MEMORY_GROWTH, (warm, target.rss())
