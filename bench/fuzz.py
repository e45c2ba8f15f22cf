"""`make fuzz`: the long fuzz run of the apiserver (issue 12), printing what it sent and found.

    python -m bench.fuzz [--requests 12000] [--schemathesis 3000] [--seed 0]

Requests come from the hypothesis strategies of tests/helpers/fuzzing.py (seeded: the same
run twice sends the same requests), then from schemathesis cases of every operation in the
served OpenAPI v3 (its namespace and name parameters pointed at the fuzz objects half of the
time), then raw bytes on the socket, all to a real apiserver process on a real etcd. Printed:
requests by class and by status code, the properties broken (5xx, hangs, a crash, something
stored by a rejected request, memory growth) with the first requests that broke them, the
duration, and the apiserver's RSS after the warm-up and at the end. Exit 1 when anything broke.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bench.measure import python_loop_line
from tests.helpers.fuzzing import NAMES, NAMESPACE, RAW_REQUESTS, Fuzzer, FuzzRequest, Target, request_classes

BATCH = 10
MEMORY_GROWTH = 64 * 1024 ** 2


def hypothesis_run(fuzzer: Fuzzer, requests: int, seed_value: int, progress) -> None:
    """``requests`` drawn from request_classes() in batches of BATCH (re-seeding objects every 250)."""
    classes, count = request_classes(), [0]

    @seed(seed_value)
    @settings(max_examples=max(1, requests // BATCH), database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(st.data())
    def batch(data):
        if count[0] % 25 == 0:
            fuzzer.target.seed(fuzzer.client)
            progress()
        count[0] += 1
        for _ in range(BATCH):
            fuzzer.send(data.draw(classes[data.draw(st.integers(0, len(classes) - 1))]))

    batch()


def schemathesis_run(fuzzer: Fuzzer, cases: int, progress) -> None:
    """``cases`` schemathesis cases spread over every operation of every served group-version."""
    import httpx
    import schemathesis

    root = httpx.get(fuzzer.target.url + "/openapi/v3", timeout=30).json()
    operations = []
    for entry in root["paths"].values():
        doc = httpx.get(fuzzer.target.url + entry["serverRelativeURL"], timeout=30).json()
        operations += [result.ok() for result in schemathesis.openapi.from_dict(doc).get_all_operations()]
    per_operation = max(1, cases // max(1, len(operations)))
    for number, operation in enumerate(operations):
        if number % 20 == 0:
            fuzzer.target.seed(fuzzer.client)
            progress()
        _cases_of(fuzzer, operation, per_operation)


def _cases_of(fuzzer: Fuzzer, operation, count: int) -> None:
    sent = [0]

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(operation.as_strategy())
    def one(case):
        sent[0] += 1
        params = case.path_parameters or {}
        if sent[0] % 2 == 0:     # half of the cases aim at the fuzz namespace and its objects
            params.update({k: NAMESPACE for k in params if k == "namespace"})
            params.update({k: NAMES[sent[0] % 3] for k in params if k == "name"})
        fuzzer.send(_request(case))

    one()


def _request(case) -> FuzzRequest:
    import json

    body = None if type(case.body).__name__ == "NotSet" else case.body
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    headers = dict(case.headers or {})
    if body is not None:
        headers.setdefault("Content-Type", case.media_type or "application/json")
    params = tuple((k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (case.query or {}).items())
    return FuzzRequest("schemathesis", case.method.upper(), case.formatted_path, params,
                       tuple((k, str(v)) for k, v in headers.items()), body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12_000, help="requests from the hypothesis strategies")
    parser.add_argument("--schemathesis", type=int, default=3_000, help="schemathesis cases from the served OpenAPI")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(python_loop_line(), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="pkube-fuzz-"))
    if True:
        target = Target(workdir).start()
        fuzzer = Fuzzer(target)
        began = time.monotonic()

        def progress() -> None:
            print(f"  {fuzzer.findings.sent} requests, {time.monotonic() - began:.0f} s, "
                  f"{len(fuzzer.findings.problems)} problems, rss {target.rss() / 2 ** 20:.0f} MiB", flush=True)

        try:
            hypothesis_run(fuzzer, min(args.requests, 500), args.seed, progress)
            warm = target.rss()
            hypothesis_run(fuzzer, max(0, args.requests - 500), args.seed + 1, progress)
            schemathesis_run(fuzzer, args.schemathesis, progress)
            for data in RAW_REQUESTS:
                fuzzer.send_raw(data)
            end = target.rss()
        finally:
            fuzzer.close()
            alive = target.alive()
            target.stop()
    failed = report(fuzzer.findings, time.monotonic() - began, warm, end, alive)
    if failed:
        print(f"the apiserver's log: {workdir / 'apiserver.log'}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return failed


def report(found, seconds: float, warm: int, end: int, alive: bool) -> int:
    """Print the figures; 1 when a property broke."""
    print(f"requests: {found.sent} in {seconds:.0f} s ({found.sent / seconds:.0f}/s), slowest answer {found.slowest:.2f} s")
    waited = sum(v for k, v in found.timing.items() if k != "stored")
    print(f"seconds waiting for answers: {waited:.0f}; listing etcd's keys around writes: {found.timing['stored']:.0f}; "
          f"the rest is generating requests")
    print("by class: " + ", ".join(f"{label} {n}" for label, n in found.by_label.most_common()))
    print("by status: " + ", ".join(f"{code} {n}" for code, n in sorted(found.by_code.items(), key=lambda kv: str(kv[0]))))
    print(f"apiserver RSS: {warm / 2 ** 20:.0f} MiB after the warm-up, {end / 2 ** 20:.0f} MiB at the end; "
          f"alive at the end: {alive}")
    growth = end - warm > MEMORY_GROWTH
    print(f"problems: {len(found.problems)}" + (" + memory grew by more than 64 MiB" if growth else ""))
    for line in found.problems[:40]:
        print("  " + line)
    return 1 if found.problems or growth or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
