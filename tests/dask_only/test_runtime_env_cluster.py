"""A job-level ``working_dir`` reaches workers that join a real ``dask scheduler`` /
``dask worker`` cluster after ``ray.init``, through the registered WorkerPlugin."""

import json
import os
import signal

from conftest import run_script

from dask_only.conftest import _dask_cmd


def test_worker_joining_after_init_gets_the_working_dir(cli_cluster, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "rtenv_cli_mod.py").write_text("X = 11\n")
    (wd / "data.txt").write_text("shipped\n")
    late_dir = tmp_path / "late"
    late_log = tmp_path / "late.log"
    proc = run_script(
        f"""
        import json, os, subprocess, sys
        import distributed
        import raycompat as ray

        ray.init(address={cli_cluster.address!r}, runtime_env={{"working_dir": {str(wd)!r}}})

        @ray.remote
        def probe():
            import rtenv_cli_mod
            return os.getcwd(), open("data.txt").read(), rtenv_cli_mod.X

        out = {{"before": ray.get(probe.remote(), timeout=120)}}
        log = open({str(late_log)!r}, "w")
        late = subprocess.Popen(
            {_dask_cmd()!r} + ["worker", {cli_cluster.address!r}, "--host", "127.0.0.1",
             "--dashboard-address", "127.0.0.1:0", "--nthreads", "1", "--no-nanny",
             "--name", "late", "--resources", "late=1", "--local-directory", {str(late_dir)!r}],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={{**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}},
        )
        print("LATEPID", late.pid, flush=True)
        try:
            with distributed.Client({cli_cluster.address!r}, timeout=60) as c:
                c.wait_for_workers(3, timeout=60)
            out["late"] = ray.get(probe.options(resources={{"late": 1}}).remote(), timeout=120)
        finally:
            late.kill()  # a SIGTERMed `dask worker --no-nanny` sometimes hangs while closing
            late.wait()
        ray.shutdown()
        print("RESULT" + json.dumps(out))
        """,
        timeout=240,
    )
    pids = [int(ln.split()[1]) for ln in proc.stdout.splitlines() if ln.startswith("LATEPID")]
    for pid in pids:  # the script stops its worker; make sure, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, proc.stderr[-3000:] + (late_log.read_text()[-2000:] if late_log.exists() else "")
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][6:])
    assert out["before"][1:] == ["shipped\n", 11]
    cwd, data, x = out["late"]
    assert (data, x) == ("shipped\n", 11)
    assert cwd.startswith(str(late_dir))  # unpacked by the late worker itself

    from distributed import Client

    with Client(cli_cluster.address, timeout=60) as c:
        plugins = c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert not [p for p in plugins if p.startswith("raycompat-runtime-env")], plugins
