"""``ray.timeline()``: Chrome-trace events of tasks and actor calls."""

import json


def test_timeline_has_tasks_and_actor_calls(ray, tmp_path):
    @ray.remote
    def traced_function(x):
        return x

    @ray.remote
    class TracedActor:
        def traced_method(self):
            return 1

    a = TracedActor.remote()
    ray.get([traced_function.remote(i) for i in range(3)] + [a.traced_method.remote() for _ in range(3)])
    import time

    time.sleep(2)  # Ray and Dask both report task events asynchronously
    events = ray.timeline()
    assert isinstance(events, list) and events
    for e in events[:20]:
        assert {"name", "ph", "ts", "pid", "tid"} <= set(e)
    names = " ".join(str(e["name"]) for e in events)
    assert "traced_function" in names
    assert "traced_method" in names
    path = tmp_path / "trace.json"
    assert ray.timeline(filename=str(path)) is None
    assert isinstance(json.loads(path.read_text()), list)
