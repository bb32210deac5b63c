"""Inside the sandbox: the only place a submission's code runs.

A worker is forked from a fork server that has already imported torch, timm and the harness
(``PRELOAD``; harness code only), so that starting one costs milliseconds, not seconds. Each
worker serves one submission file, for one run or one description, and then ends: nothing it
learnt in one run (a training fold's labels) can reach a later run that tests on those clips.

Its life (``keeper``): the forked process enters new PID and network namespaces and forks the
worker, which is init of the PID namespace, so every process the submission starts dies with
it; the worker confines itself (``harness.core.sandbox``), imports the one submission file, and
answers the driver's requests. It never sees a test label: the driver sends the training and
validation features with their labels, and the test fold's features only after ``fit`` has
returned; it sends back predictions, which the driver scores (``harness.runs.execute``).

Messages from the driver are pickled (the driver is trusted); a worker answers in JSON only,
which the driver reads with a size limit and checks (``harness.runs.sandboxed``): nothing a
submission sends can run code in the driver. Arrays travel as memory files (``memfd``) passed
over the socket, never through the file system (``harness.runs.protocol``).
"""
from __future__ import annotations

import os
import tempfile

from harness.core import sandbox
from harness.runs.protocol import reply

PRELOAD = ["torch", "timm", "harness.runs.worker_tasks"]  # imported by the fork server, before any submission


# --- a worker's life ------------------------------------------------------------------------------

def keeper(conn, policy: sandbox.Policy | None, env: dict[str, str]) -> None:
    """The forked process: it holds the namespaces and waits for the worker, its only child.

    Killing it (the driver's time limit) kills the worker (``PR_SET_PDEATHSIG``), and with it
    the PID namespace and everything the submission started in it.
    """
    try:
        sandbox.die_with_parent()
        if policy is not None:
            sandbox.enter_namespaces()
    except sandbox.SandboxUnavailable as err:
        reply(conn, {"event": "unavailable", "error": str(err)})
        os._exit(0)
    pid = os.fork()
    if pid == 0:
        os._exit(_worker(conn, policy, env))
    conn.close()
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def only_our_files(conn) -> None:
    """Close every descriptor the fork server passed on but the connection to the driver (its
    resource tracker's and its own pipes would let the submission reach unconfined processes), and
    put /dev/null on stdin, stdout and stderr (what a submission prints is not the driver's to show)."""
    keep = conn.fileno()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _worker(conn, policy: sandbox.Policy | None, env: dict[str, str]) -> int:
    try:
        only_our_files(conn)
        sandbox.die_with_parent()
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # the fork server's choice was made under the driver's environment
        if policy is not None:
            sandbox.restrict(policy)
    except sandbox.SandboxUnavailable as err:
        reply(conn, {"event": "unavailable", "error": str(err)})
        return 0
    except Exception as err:  # a confinement step failed in a way the kernel did not foresee: fail closed
        reply(conn, {"event": "unavailable", "error": f"{type(err).__name__}: {err}"})
        return 0
    reply(conn, {"event": "ready", "pid": os.getpid(), "confined": policy is not None})
    from harness.runs import worker_tasks

    return worker_tasks.serve(conn)
