"""run_experiments.sh's Ray backend: every job one Ray task that runs train.py, on a local instance or a cluster.

    python -m experiment.ray_jobs --jobs jobs.jsonl --events DIR [--address auto|HOST:PORT] [--cpus_per_job N]
    python -m experiment.ray_jobs --sweep VALUE   # stop every process of the local instance given --instance VALUE

`--jobs` holds one JSON object per line: `id`, `argv` (the train.py command), `cwd` (its working folder),
`log` (where its output goes) and `output_dir`. The driver starts (or joins) Ray first and waits for that file to
appear, so run_experiments.sh starts it before it has checked its jobs, and the instance comes up meanwhile; the
file must appear whole (written beside it, then renamed). Each job becomes one Ray task with `num_cpus` =
`--cpus_per_job` (and one GPU when the cluster has GPUs); the task runs the command as a child process, so a job
that fails, or kills its process, never touches the others. What happens is written into `--events` for
run_experiments.sh to read: `<id>.started` (the node: its address and Ray id, and its host name) when a task
begins, `<id>.done` (exit code, node, host name, seconds) when it ends. `--imported FILE` is created once ray has
been imported: the script's check that the backend can run (the driver exits with 2 when it cannot).

Without `--address`, a Ray instance sized to this machine is started for the run and stopped at its end; it
listens on 127.0.0.1 only, keeps token authentication on (`RAY_AUTH_MODE=token`), has no dashboard unless
`--dashboard`, and runs the jobs at niceness 0 (Ray's workers have 15) unless `RAY_worker_niceness` says
otherwise. With `--address` (`auto`, or the head's `HOST:PORT`) the jobs run on that cluster, whose token Ray
reads from `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`.

SIGTERM or Ctrl-C before the jobs file appears stops the instance; after, it stops every task: the driver writes
`<events>/stop`, a running task sends its train.py SIGTERM (which records the run as interrupted) and SIGKILL after
`STOP_GRACE_SECONDS`, a queued one starts nothing; a task still running after that is cancelled by force, and the
instance this module started is stopped, with whatever of it outlives Ray's shutdown. A train.py whose Ray worker
dies outright gets SIGTERM from the kernel (`PR_SET_PDEATHSIG`).
"""

import argparse
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

STOP_GRACE_SECONDS = 15
STOP_FILE = "stop"  # in the events folder: every task stops its train.py, and starts none
# Set in a local instance's environment, so every process of it carries it (see `stop_leftovers`).
INSTANCE_VARIABLE = "GATED_BERT_RAY_INSTANCE"
# A local instance: its node's address is 127.0.0.1, so it listens there only (Ray otherwise takes this machine's
# network address on Linux); token authentication on whatever the caller's environment says.
LOCAL_INSTANCE_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
# Variables the jobs need from the environment run_experiments.sh ran in (a cluster's workers have their own).
FORWARDED = re.compile(r"^(HF_|TRANSFORMERS_|WANDB_|TF_|KERAS_|CUDA_VISIBLE_DEVICES$|PYTHONPATH$)")


def read_jobs(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def forwarded_environment(environ):
    """The variables a job's train.py reads: the config's own (upper-case field names, aliases) and the libraries'
    (Hugging Face, W&B, TensorFlow)."""
    from experiment.config import ENV_ALIASES, _field_names, env_name

    names = {env_name(name) for name in _field_names()} | set(ENV_ALIASES)
    return {key: value for key, value in environ.items() if key in names or FORWARDED.match(key)}


def _write_event(path, fields):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(" ".join(str(field) for field in fields) + "\n")
    os.replace(tmp, path)


def _die_with_parent():
    """In the child, before exec: SIGTERM when the Ray worker that started it dies (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_child(child, grace=STOP_GRACE_SECONDS):
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def run_job(job, events, environment):
    """The body of one Ray task: train.py as a child process; returns `(exit code, node, host name, seconds)`.
    Once `<events>/stop` exists it starts nothing, and stops a running train.py (SIGTERM: the run records that it
    was interrupted)."""
    import ray

    # The node: its address, and the start of its Ray id (several nodes can share a machine).
    address = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    host, started, stop = socket.gethostname(), time.time(), os.path.join(events, STOP_FILE)
    if os.path.exists(stop):
        return 128 + signal.SIGTERM, address, host, 0.0
    _write_event(os.path.join(events, f"{job['id']}.started"), (address, host))
    if not os.path.isdir(job["output_dir"]):
        print(f"error: {job['output_dir']} is not visible on node {address} ({host}): the Ray backend needs the "
              "output folder on a file system every node shares", file=sys.stderr)
        return 2, address, host, 0.0
    with open(job["log"], "ab") as log:
        child = subprocess.Popen(job["argv"], cwd=job["cwd"], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env={**os.environ, **environment},
                                 preexec_fn=_die_with_parent)
    try:
        while True:  # in short waits: a cancelled task's KeyboardInterrupt arrives between them
            try:
                code = child.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                if os.path.exists(stop):
                    code = stop_child(child)
                    break
    except BaseException:  # cancelled: Ray raises KeyboardInterrupt in the task
        stop_child(child)
        raise
    return (code if code >= 0 else 128 - code), address, host, time.time() - started  # killed by signal N: 128+N


def processes_carrying(variable, value):
    """This user's processes (this one aside) whose environment holds `variable=value`; none where /proc is
    missing."""
    needle, found = f"{variable}={value}".encode(), []
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else ()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0") and int(pid) != os.getpid():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _signal_all(pids, number):
    for pid in pids:
        try:
            os.kill(pid, number)
        except OSError:  # gone already
            pass


def stop_leftovers(variable, value, grace=3.0):
    """After `ray.shutdown()` of a local instance: SIGTERM whatever of it still runs, and SIGKILL what is left after
    `grace` seconds, and returns once they have exited (or 2 s more have passed). Ray's agents leave only once they
    notice that their raylet has gone, and have been seen alive over 10 s after a stop; a run must not end with them
    behind it. Returns how many were found."""
    found = left = processes_carrying(variable, value)
    for number, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):  # after SIGKILL: until they have exited
        _signal_all(left, number)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = processes_carrying(variable, value)
    return len(found)


def start_ray(address, cores, dashboard, instance=None):
    """Connect to the cluster at `address`, or start a local instance of `cores` CPUs (loopback only, token
    authentication, no dashboard unless asked); returns whether this process started it."""
    import ray

    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        return False
    # Every process of the instance inherits it (run_experiments.sh names it, to sweep them if it must kill us).
    os.environ[INSTANCE_VARIABLE] = instance or uuid.uuid4().hex
    ray.init(num_cpus=cores, include_dashboard=dashboard, log_to_driver=False, logging_level="WARNING")
    return True


STOP = []  # the signal that asked the driver to stop


def _ask_stop(signum, frame):
    STOP.append(signum)


def wait_for_jobs(path):
    """The jobs, once their file exists; None when asked to stop before."""
    while not os.path.exists(path):
        if STOP:
            return None
        time.sleep(0.05)
    return read_jobs(path)


def run(jobs_path, events, address=None, cpus_per_job=1, cores=None, dashboard=False, instance=None):
    """Run every job of `jobs_path` (waited for) as a Ray task; returns 0, or 130/143 when stopped by
    SIGINT/SIGTERM."""
    import ray

    pending = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _ask_stop)
    try:
        began = time.time()
        started_here = start_ray(address, cores or os.cpu_count(), dashboard, instance)
        for number in (signal.SIGTERM, signal.SIGINT):  # again: ray.init installs its own
            signal.signal(number, _ask_stop)
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        print(f"ray: {'started a local instance' if started_here else 'joined ' + address} in "
              f"{time.time() - began:.1f} s; {nodes} node(s), {ray.cluster_resources().get('CPU', 0):g} CPUs; "
              f"{cpus_per_job:g} CPU(s){' and 1 GPU' if gpus else ''} per job", flush=True)
        task = ray.remote(run_job).options(num_cpus=cpus_per_job, num_gpus=gpus, max_retries=0)
        environment = forwarded_environment(os.environ)
        jobs = wait_for_jobs(jobs_path)
        if jobs is None:  # the script ended before it had jobs to give (a bad setting, or Ctrl-C)
            return 128 + STOP[0]
        pending = {task.remote(job, events, environment): job for job in jobs}
        while pending and not STOP:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    code, node, host, seconds = ray.get(ref)
                except ray.exceptions.RayError as error:  # the worker or its node died
                    print(f"ray: job {job['id']} lost: {type(error).__name__}: {str(error).splitlines()[0]}",
                          file=sys.stderr, flush=True)
                    code, node, host, seconds = 1, "-", "-", 0.0
                _write_event(os.path.join(events, f"{job['id']}.done"), (code, node, host, f"{seconds:.1f}"))
        if not STOP:
            return 0
        # The tasks are told through the events folder, not ray.cancel: cancelling a running task has crashed this
        # process inside Ray (a CHECK in its task manager, when the task's reply came back), so nothing got stopped.
        print(f"ray: stopping {len(pending)} job(s)", file=sys.stderr, flush=True)
        _write_event(os.path.join(events, STOP_FILE), (STOP[0],))
        _, hung = ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE_SECONDS + 5)
        for ref in hung:  # past their train.py's SIGKILL: a worker that does not answer
            ray.cancel(ref, force=True)
        return 128 + STOP[0]
    finally:
        if ray.is_initialized():
            ray.shutdown()  # stops the instance this process started; leaves a cluster it joined
        if not address and INSTANCE_VARIABLE in os.environ:
            left = stop_leftovers(INSTANCE_VARIABLE, os.environ[INSTANCE_VARIABLE])
            if left:
                print(f"ray: stopped {left} process(es) of the instance that outlived its shutdown", file=sys.stderr,
                      flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--jobs", help="JSON lines, one job each (id, argv, cwd, log, output_dir); waited for once "
                        "Ray is up (required unless --sweep)")
    parser.add_argument("--events", help="folder for the <id>.started and <id>.done files (required unless --sweep)")
    parser.add_argument("--address", help="a Ray cluster to join (auto, or HOST:PORT) [start a local instance]")
    parser.add_argument("--cpus_per_job", type=float, default=1, help="num_cpus of each task [1]")
    parser.add_argument("--cores", type=int, help="CPUs of a local instance [this machine's]")
    parser.add_argument("--dashboard", action="store_true", help="start the dashboard with a local instance")
    parser.add_argument("--instance", help=f"the {INSTANCE_VARIABLE} value every process of a local instance "
                        "carries, for stop_leftovers [a new random one]")
    parser.add_argument("--imported", help="a file to create once ray has been imported (the caller's check that "
                        "the backend can run)")
    parser.add_argument("--sweep", metavar="VALUE", help="run nothing: stop every process of this user that carries "
                        f"{INSTANCE_VARIABLE}=VALUE (a killed driver's instance; Ray is not imported) and exit")
    args = parser.parse_args(argv)
    if args.sweep is None and not (args.jobs and args.events):
        parser.error("--jobs and --events are required (or --sweep VALUE alone)")
    if args.sweep is not None and (args.jobs or args.events or not args.sweep):
        parser.error("--sweep takes a non-empty instance value and no jobs: the value given to the driver's --instance")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.sweep is not None:
        found = stop_leftovers(INSTANCE_VARIABLE, args.sweep)
        print(f"ray: stopped {found} process(es) carrying {INSTANCE_VARIABLE}={args.sweep}", file=sys.stderr)
        return 0
    if not args.address:  # read when ray is imported, or by the instance it starts
        os.environ.update(LOCAL_INSTANCE_ENVIRONMENT)
        # Ray runs its workers, and so the train.py they start, at niceness 15: on a machine doing anything else
        # the jobs would lose to it, where the local backend's run at the caller's priority. A local instance runs
        # them at 0 unless the caller says otherwise; a cluster keeps its own setting.
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: the Ray backend needs the ray package: pip install 'gated-bert[ray]' (or pip install ray)",
              file=sys.stderr)
        return 2
    if args.imported:
        open(args.imported, "w").close()
    return run(args.jobs, args.events, args.address, args.cpus_per_job, args.cores, args.dashboard, args.instance)


if __name__ == "__main__":
    sys.exit(main())
