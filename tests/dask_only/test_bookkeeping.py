"""A long-running driver leaves no per-call state behind on the scheduler or the workers
(the soak benchmark, ``benchmarks/soak.py``, measures the memory; these pin the causes)."""

from __future__ import annotations

import time

from conftest import wait_until


def _client():
    from raycompat._dask import driver

    return driver.current_session().client


def _span_state(dask_scheduler):
    spans = dask_scheduler.extensions["spans"]
    return {
        "spans": len(spans.spans),
        "groups": sum(len(s.groups) for s in spans.spans.values()),
        "collections": sum(len((s._metadata or {}).get("collections", ())) for s in spans.spans.values()),
    }


def _worker_metric_keys(dask_worker):
    return len(dask_worker.digests_total)


def test_bursts_of_calls_share_the_jobs_span(ray):
    """Dask opens a new "default" span whenever the last one finished, and keeps every span
    and, on each worker, its metrics, for good: one per burst of ``.remote()`` calls. All
    of a job's tasks, including those submitted from inside tasks, go to one span."""

    @ray.remote
    def leaf(x):
        return x + 1

    @ray.remote
    def parent(x):
        return ray.get(leaf.remote(x))

    def burst(i):
        assert ray.get([leaf.remote(i), parent.remote(i)]) == [i + 1, i + 1]

    for i in range(5):
        burst(i)
    time.sleep(1.5)  # a heartbeat: the workers' metrics reach the scheduler
    before = _client().run_on_scheduler(_span_state)
    metrics_before = sum(_client().run(_worker_metric_keys).values())
    for i in range(40):
        burst(i)
    time.sleep(1.5)
    after = _client().run_on_scheduler(_span_state)
    assert after["spans"] == before["spans"], (before, after)
    assert after["collections"] == before["collections"], (before, after)
    # Forgotten task groups leave their span.
    assert wait_until(lambda: _client().run_on_scheduler(_span_state)["groups"] <= before["groups"] + 2)
    assert sum(_client().run(_worker_metric_keys).values()) <= metrics_before + 4


def test_a_user_span_is_kept(ray):
    """``distributed.span`` around calls still names their span, as on plain Dask."""
    import distributed

    @ray.remote
    def in_user_span():
        return 1

    with distributed.span("my-stage"):
        ref = in_user_span.remote()
    assert ray.get(ref) == 1

    def names(dask_scheduler):
        return [s.name for s in dask_scheduler.extensions["spans"].spans.values()]

    assert ("my-stage",) in _client().run_on_scheduler(names)


def test_timeline_keeps_a_compact_bounded_record(ray):
    """``ray.timeline()`` reads a record of (key, worker, thread, start, stop, status) per
    task, capped at Ray's 100,000, with what the state API shows of the task (name,
    function, job, pid, error); Dask's full task stream is not started."""
    from raycompat._dask import task_events

    @ray.remote
    def recorded(x):
        if x == 3:
            raise ValueError("boom")
        return x

    refs = [recorded.remote(i) for i in range(5)]
    ray.wait(refs, num_returns=5)

    def record(dask_scheduler):
        plugin = dask_scheduler.plugins[task_events.NAME]
        return plugin.events.maxlen, list(plugin.events), "task-stream" in dask_scheduler.plugins

    maxlen, events, dask_stream = _client().run_on_scheduler(record)
    assert maxlen == task_events.MAX_TASKS == 100_000
    assert not dask_stream
    mine = [e for e in events if str(e[0]).startswith("recorded-")]
    assert len(mine) == 5
    for key, worker, thread, start, stop, status, about in mine:
        assert worker.startswith("tcp://") and isinstance(thread, int) and stop >= start
        name, _function, job_id, pid, error = about
        assert name == "recorded" and job_id == ray.get_runtime_context().get_job_id() and pid > 0
        assert (error is None) == (status == "OK")
    assert sorted(e[5] for e in mine) == ["OK"] * 4 + ["error"]


def test_timeline_falls_back_to_dasks_task_stream_without_the_record():
    """On a scheduler without raycompat's record (a joined cluster whose scheduler
    cannot import raycompat), the timeline reads Dask's own task stream instead."""
    import distributed

    from raycompat._dask import observability

    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            assert observability._task_records(client, 0.0) == []  # starts Dask's stream
            assert client.submit(lambda: 7, key="plain-dask-task").result() == 7
            assert wait_until(lambda: any(r[0] == "plain-dask-task"
                                          for r in observability._task_records(client, 0.0)))
            key, worker, thread, start, stop, status = next(
                r for r in observability._task_records(client, 0.0) if r[0] == "plain-dask-task")
            assert stop >= start and status == "OK"
