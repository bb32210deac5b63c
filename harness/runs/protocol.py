"""What a worker and the driver say to each other: requests (pickled, from the trusted driver),
answers (JSON only: nothing a submission sends can run code in the driver) and arrays (memory
files passed over the socket, never through the file system)."""
from __future__ import annotations

import json
import mmap
import os
import time
import traceback
from multiprocessing import reduction
from typing import Any, Callable

import numpy as np

MAX_EVENT_RATE = 2.0  # step events per second, at most


def send_arrays(conn, arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], list[int]]:
    """Each array in a memory file of its own: (their specs, for the message that announces them,
    and the files, passed after it with ``pass_fds``)."""
    specs, fds = [], []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        fd = os.memfd_create(f"bench-{name}", os.MFD_CLOEXEC)
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(array.data if array.nbytes else b"")
        specs.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        fds.append(fd)
    return specs, fds


def pass_fds(conn, fds: list[int]) -> None:
    for fd in fds:
        reduction.send_handle(conn, fd, 0)
        os.close(fd)


def receive_arrays(conn, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays announced by ``specs``, mapped copy-on-write (writable, copied only where written)."""
    out = {}
    for spec in specs:
        fd = reduction.recv_handle(conn)
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        size = int(np.prod(shape)) * dtype.itemsize
        if size == 0:
            out[spec["name"]] = np.zeros(shape, dtype)
        else:
            buffer = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            out[spec["name"]] = np.frombuffer(buffer, dtype).reshape(shape)
        os.close(fd)
    return out


def reply(conn, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message, allow_nan=True, default=str).encode())


def throttled(send: Callable[[dict], None]) -> Callable[[dict], None]:
    """``send`` at most ``MAX_EVENT_RATE`` times a second (the bar needs no more)."""
    last = [0.0]

    def maybe(message: dict) -> None:
        if time.monotonic() - last[0] >= 1 / MAX_EVENT_RATE:
            last[0] = time.monotonic()
            send(message)
    return maybe


def failure(err: BaseException, where: str = "") -> dict[str, Any]:
    text = f"{type(err).__name__}: {err}"
    return {"event": "error", "error": f"{where}: {text}" if where else text,
            "traceback": "".join(traceback.format_exception(err, limit=-3))[-4000:]}
