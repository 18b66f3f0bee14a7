"""``raycompat start`` / ``stop`` / ``status``: a Dask cluster managed like ``ray start``.

``raycompat start --head`` starts a Dask scheduler (on Ray's port 6379, its dashboard on
Ray's 8265, both on 127.0.0.1 unless ``--node-ip-address``/``--dashboard-host`` say
otherwise) and this node's workers (``--num-cpus``, default all cores; ``--num-gpus``,
``--resources`` JSON), in the background, and prints what to run next, as ``ray start``
does. ``raycompat start --address ADDR`` starts a node's workers that join ``ADDR``.
``--block`` stays in the foreground until a started process exits or Ctrl-C, then stops
them. ``raycompat stop`` stops what ``raycompat start`` started on this machine, by pid
(``local_clusters.py``). ``raycompat status`` prints ``ray status``'s report of a cluster
(``status_format.py``). The processes themselves: ``node_launch.py``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from raycompat._dask import local_clusters

DEFAULT_PORT = 6379  # Ray's
DEFAULT_DASHBOARD_PORT = 8265  # Ray's
LOCALHOST = "127.0.0.1"


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(text)


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("start", help="Start a Dask scheduler and/or workers (ray start).")
    p.add_argument("--head", action="store_true", help="Start the head: the Dask scheduler and this node's workers.")
    p.add_argument("--address", default=None, help="The head's address, to start workers that join it.")
    p.add_argument("--port", type=int, default=None, help=f"The scheduler's port (head; default {DEFAULT_PORT}).")
    p.add_argument("--node-ip-address", default=None, help=f"The address to listen on (default {LOCALHOST}).")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of this node (default: all cores).")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of this node.")
    p.add_argument("--resources", default="{}", help='Custom resources as JSON, e.g. \'{"foo": 2}\'.')
    p.add_argument("--memory", type=int, default=None, help="Memory for this node's workers, in bytes.")
    p.add_argument("--include-dashboard", type=_bool, default=None, help="Serve the dashboard (head).")
    p.add_argument("--dashboard-host", default=LOCALHOST, help="The dashboard's host (default localhost).")
    p.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT,
                   help=f"The dashboard's port (default {DEFAULT_DASHBOARD_PORT}).")
    p.add_argument("--block", action="store_true", help="Stay in the foreground until the processes exit.")
    p.add_argument("--temp-dir", default=None, help="Where raycompat records what it started (default: temp dir).")
    p.add_argument("--disable-usage-stats", action="store_true", help="Accepted; raycompat collects none.")
    p.set_defaults(func=start_command)

    p = subparsers.add_parser("stop", help="Stop what `raycompat start` started on this machine (ray stop).")
    p.add_argument("-f", "--force", action="store_true", help="SIGKILL at once.")
    p.add_argument("-g", "--grace-period", type=float, default=16,
                   help="Seconds to wait after SIGTERM before SIGKILL (default 16).")
    p.add_argument("--temp-dir", default=None)
    p.set_defaults(func=stop_command)

    p = subparsers.add_parser("status", help="Print the cluster's nodes, resources, tasks and actors (ray status).")
    p.add_argument("--address", default=None,
                   help="The Dask scheduler's address (default: RAY_ADDRESS, else the cluster started here).")
    p.set_defaults(func=status_command)


# ---------------------------------------------------------------------------- start


def _error(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1


def start_command(args) -> int:
    from raycompat._dask import node_launch  # late: imports Dask, which stop/help need not

    if args.head == bool(args.address):
        return _error("`--address` is a required flag unless starting a head node with `--head` "
                      "(and is not taken with it).")
    if not args.head:
        for flag, value in (("--port", args.port), ("--include-dashboard", args.include_dashboard)):
            if value is not None:
                return _error(f"{flag} should only be specified when starting head node with `--head`.")
    try:
        resources = json.loads(args.resources)
        if not isinstance(resources, dict):
            raise ValueError("The format after deserialization is not a dict")
    except ValueError as e:
        return _error(f"`--resources={args.resources}` is not a valid JSON string, detail error:{e}")
    for name in ("CPU", "GPU"):
        if name in resources:
            return _error(f"Use the --num-{name.lower()}s flag instead of '{name}' in --resources.")
    host = args.node_ip_address or LOCALHOST
    num_cpus = args.num_cpus if args.num_cpus is not None else _cpu_count()
    started = []
    try:
        if args.head:
            dashboard = None
            if args.include_dashboard is not False:
                dashboard = f"{args.dashboard_host}:{args.dashboard_port}"
            proc, address = node_launch.start_scheduler(
                host, DEFAULT_PORT if args.port is None else args.port, dashboard, args.temp_dir)
            started.append(proc)
            before = node_launch.prepare_scheduler(address)
        else:
            address = args.address if "://" in args.address else "tcp://" + args.address
            before = node_launch.count_workers(address)
        workers = node_launch.start_workers(address, host, num_cpus, args.num_gpus or 0, resources,
                                            args.memory, args.temp_dir)
        started += [w for w, _ in workers]
        node_launch.wait_for_workers(address, workers, before)
    except (node_launch.StartError, OSError, TimeoutError) as e:
        _stop_started(started, args.temp_dir)
        return _error(str(e))
    local_clusters.write_address(address, args.temp_dir)
    dashboard_url = f"http://{_url_host(args.dashboard_host)}:{args.dashboard_port}/status" if (
        args.head and args.include_dashboard is not False) else None
    _print_next_steps(args.head, address, dashboard_url)
    if args.block:
        return _block(started, args.temp_dir)
    return 0


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _url_host(host: str) -> str:
    return LOCALHOST if host in ("0.0.0.0", "", "localhost") else host


def _print_next_steps(head: bool, address: str, dashboard_url) -> None:
    banner = "Ray runtime started."
    lines = ["", "-" * len(banner), banner, "-" * len(banner), ""]
    if head:
        lines += [
            "Next steps",
            "  To add another node to this Ray cluster, run",
            f"    raycompat start --address='{address}'",
            "",
            "  To connect to this Ray cluster:",
            "    import raycompat as ray",
            f"    ray.init(address='{address}')",
            "",
            "  To terminate the Ray runtime, run",
            "    raycompat stop",
            "",
            "  To view the status of the cluster, use",
            "    raycompat status",
        ]
        if dashboard_url:
            lines += ["", "  To monitor and debug Ray, view the dashboard at", f"    {dashboard_url}"]
    else:
        lines += ["To terminate the Ray runtime, run", "  raycompat stop"]
    print("\n".join(lines), flush=True)


def _stop_started(procs: list, temp_dir) -> None:
    pids = {p.pid for p in procs}
    local_clusters.stop([r for r in local_clusters.records(temp_dir) if r["pid"] in pids], grace=10,
                        temp_dir=temp_dir)
    for p in procs:
        p.poll()


def _block(procs: list, temp_dir) -> int:
    """Ray's ``--block``: wait until a started process exits or a signal comes, then stop
    the others."""
    print("\n--block\n  This command will now block forever until terminated by a signal.\n"
          "  Running subprocesses are monitored and a message will be printed if any of them "
          "terminate unexpectedly. Subprocesses exit with SIGTERM will be treated as graceful, "
          "thus NOT reported.", flush=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        gone = [p for p in procs if p.returncode is not None]
        unexpected = [p for p in gone if p.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM)]
        if unexpected:
            print("Some Ray subprocesses exited unexpectedly:", file=sys.stderr)
            for p in unexpected:
                print(f"  pid={p.pid} exit code {p.returncode} (log: {p.log_path})", file=sys.stderr)
            print("Remaining processes will be killed.", file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        pass
    _stop_started(procs, temp_dir)
    if not any(local_clusters.alive(r) for r in local_clusters.records(temp_dir)):
        local_clusters.clear_address(temp_dir)
    return code


# ---------------------------------------------------------------------------- stop


def stop_command(args) -> int:
    recs = local_clusters.records(args.temp_dir)
    found, stopped = local_clusters.stop(recs, grace=args.grace_period, force=args.force, temp_dir=args.temp_dir)
    local_clusters.clear_address(args.temp_dir)
    if found == 0:
        print("Did not find any active Ray processes.")
    elif stopped == found:
        print(f"Stopped all {found} Ray processes.")
    else:
        print(f"Stopped only {stopped} out of {found} Ray processes within the grace period "
              f"{args.grace_period:g} seconds. Set `-v` to see more details. Remaining processes "
              "were force killed.")
    return 0


# ---------------------------------------------------------------------------- status


def status_command(args) -> int:
    from raycompat._dask import cluster_status  # late: imports Dask, which stop/help need not
    from raycompat.scripts.status_format import format_status
    from raycompat.util.state.api import connect
    from raycompat.util.state.exception import RayStateApiException

    try:
        with connect(args.address) as client:
            status = client.run_on_scheduler(cluster_status.status_remote)
    except (ConnectionError, OSError, RayStateApiException) as e:
        return _error(str(e))
    print(format_status(status))
    return 0
