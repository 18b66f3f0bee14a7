"""``get_runtime_context()`` and ids, on the driver and inside tasks."""


def test_runtime_context_driver_and_task(ray):
    ctx = ray.get_runtime_context()
    assert ctx.get_task_id() is None
    job = ctx.get_job_id()
    assert isinstance(job, str) and job
    assert isinstance(ctx.namespace, str)

    @ray.remote
    def inside():
        c = ray.get_runtime_context()
        return c.get_job_id(), c.get_task_id(), c.get_node_id(), c.namespace

    tjob, task_id, node_id, ns = ray.get(inside.remote())
    assert tjob == job
    assert task_id is not None
    assert ns == ctx.namespace
    assert node_id in {n["NodeID"] for n in ray.nodes()}


def test_gpu_ids_empty_without_gpus(ray):
    assert ray.get_gpu_ids() == []
