"""The supervision loop of `pkube up` and `pkube join` (pkube/cluster/components.py), on real
processes: a component that exits is started again; one marked final_on_success (a node's
join, stopped by its own `pkube down`) that exits 0 stays stopped, but not one that fails."""

from __future__ import annotations

from pkube.cluster.components import Component, watch_components
from tests.helpers.waiting import wait_for


def supervise(components: list[Component], passes: int = 20) -> None:
    """`passes` turns of watch_components, 0.05 s apart."""
    turns = iter(range(passes))
    watch_components(components, lambda: next(turns, None) is None, lambda _: None, period=0.05)


def test_a_final_component_that_exits_0_stays_stopped_and_others_are_restarted(tmp_path):
    stopped = Component("stopped node", ["true"], tmp_path / "stopped.log", final_on_success=True)
    failing = Component("failing node", ["false"], tmp_path / "failing.log", final_on_success=True)
    plain = Component("plain", ["true"], tmp_path / "plain.log")
    for comp in (stopped, failing, plain):
        comp.start()
        wait_for(lambda: not comp.alive(), timeout=10)
    supervise([stopped, failing, plain])
    assert stopped.restarts == 0 and stopped.stopped_for_good()
    assert failing.restarts >= 1 and plain.restarts >= 1
