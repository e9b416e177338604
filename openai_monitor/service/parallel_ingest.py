"""Large imports on two cores: one parsing process reads, prices and turns records into row tuples and
rollup deltas while this process writes the previous batch.

One process reads every file, in order, with one ``run`` dict: cross-file de-duplication (Claude's
sidechain rule, replayed sessions) sees exactly what the in-process path sees, so the records, batches and
file progress are the same. Each batch is still one store transaction with its files' progress. The pipe
holds at most one batch, which bounds memory and keeps both processes busy. Pricing needs a picklable
``pricer_factory`` (the Pricer holds compiled match functions); without one the import stays in-process.
Used for large files only (``use_worker``).
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from .ingest import Batch, produce_batches

# A file with less than this to read does not go to a parsing process. Big files are usage exports
# (~13k rows per MB): parsing them overlaps with writing (1M CSV rows: 20.4 s -> 13.8 s). Log directories
# are many small files with few records per MB (Claude: ~230 per MB, 866 files in 210 MB), cut into
# batches of 500 files: nothing to overlap, and the process start-up made them slower (1.44 -> 2.33 s).
MIN_BYTES = 20_000_000
# The first batch the parsing process sends; the next ones grow by a quarter up to WORKER_BATCH. The writer
# waits for the first batch only (fork to first 2k rows: 0.09-0.10 s; 0.14 s for 8k).
RAMP_FROM = 2_048
# Rows per batch sent: small, so that the parsing process keeps ahead of the writer, which joins them
# into transactions of ingest.GROUP_ROWS (1M CSV rows: the writer waited 0.85 s for batches growing to
# 100k, 0.3 s with 16k).
WORKER_BATCH = 16_384
# Batches received ahead of the writer (each ~16k rows: a few MB).
AHEAD = 4


def use_worker(
    store: Any,
    adapter: Any,
    largest_bytes: int,
    pricer: Any,
    pricer_factory: Callable[[], Any] | None,
    parallel: bool,
) -> bool:
    """Whether this import should parse in a second process (``largest_bytes``: the most any one file
    has to read)."""
    if not parallel or largest_bytes < MIN_BYTES or getattr(adapter, "replace", False):
        return False
    if pricer is not None and pricer_factory is None:
        # The caller's Pricer cannot cross processes (compiled match functions); pricing records sent
        # back here costs more than it saves (1M CSV rows: 25.1 s against 20.4 s in-process).
        return False
    if os.name == "nt" or (os.cpu_count() or 1) < 2:  # pass_fds is POSIX-only
        return False
    return hasattr(store, "ingest_rows")


def _worker(
    conn: Any, adapter: Any, todo: list, stats: dict, options: dict, pricer_factory: Any, sizes: tuple
) -> None:
    from ..store.repo import rollup_deltas
    from .fork_ingest import batch_rows, send_batch, send_failure

    gc.disable()  # as in run_import: big batches, no reference cycles
    try:
        pricer = pricer_factory() if pricer_factory is not None else None
        records, files = sizes
        for b in produce_batches(
            adapter,
            todo,
            stats,
            options,
            pricer,
            batch_records=records,
            batch_files=files,
            ramp_from=RAMP_FROM,
            columnar=True,
        ):
            send_batch(conn, b, batch_rows(b, rollup_deltas))
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the importing process
        send_failure(conn, e)
    finally:
        conn.close()


def _child() -> None:
    """Entry point of the parsing process: arguments come pickled on stdin, batches go to the pipe
    whose descriptor is argv[1]."""
    from multiprocessing.connection import Connection

    args = pickle.load(sys.stdin.buffer)
    _worker(Connection(int(sys.argv[1]), readable=False), *args)


def batches_in_worker(
    adapter: Any,
    todo: list[tuple[Path, int, dict]],
    stats: dict[Path, os.stat_result],
    options: dict[str, Any],
    pricer_factory: Callable[[], Any] | None,
    pricer: Any = None,
) -> Iterator[Batch]:
    """``produce_batches`` run in a freshly started interpreter (not a fork: the daemon is multi-threaded,
    and fork would copy its locks; not multiprocessing's spawn either, which re-imports the caller's
    ``__main__`` and fails under a script without a main guard). Batches arrive priced, as row tuples
    with their rollup deltas."""
    from multiprocessing.connection import Connection

    from . import ingest
    from .fork_ingest import _threads, widen_pipe

    sizes = (min(ingest.BATCH_RECORDS, WORKER_BATCH), ingest.BATCH_FILES)
    if hasattr(os, "fork") and _threads() == 1:
        # A forked process inherits this process's Pricer: no need to build another one.
        factory = (lambda: pricer) if pricer is not None else pricer_factory
        yield from _batches_in_fork(adapter, todo, stats, options, factory, sizes)
        return

    import openai_monitor

    env = dict(os.environ)
    pkg_root = str(Path(openai_monitor.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(x for x in (pkg_root, env.get("PYTHONPATH")) if x)
    rfd, wfd = os.pipe()
    widen_pipe(wfd)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from {__name__} import _child; _child()", str(wfd)],
            stdin=subprocess.PIPE,
            pass_fds=(wfd,),
            env=env,
        )
    finally:
        os.close(wfd)
    recv = Connection(rfd, writable=False)
    try:
        assert proc.stdin is not None
        try:
            pickle.dump((adapter, todo, stats, options, pricer_factory, sizes), proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the process died at start-up: reported below as its exit code
        yield from _received(recv, proc.wait)
    finally:
        recv.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _received(recv: Any, exit_code: Callable[[], int]) -> Iterator[Batch]:
    """The batches a parsing process sends (its rows marshalled, then the pickled batch), until it closes
    the pipe (``exit_code()`` must then be 0) or sends a batch carrying an error.

    A thread of this process reads them into a queue of up to AHEAD batches while this one writes: the
    parsing process then never waits on a full pipe while the writer is busy, which matters when the
    host takes part of the second core (1M CSV rows with a burner at half a core: 10.4 -> 10.0 s; no
    change with a free core). The thread is stopped and joined before this generator returns."""
    import queue
    import threading

    from .fork_ingest import recv_batch

    ready: queue.Queue = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                if not recv.poll(0.1):
                    continue
                item: Any = recv_batch(recv)
            except EOFError:
                item = None
            except BaseException as e:  # noqa: BLE001 - handed to the writer, which raises it
                item = e
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, Batch) or item.error is not None:
                return

    reader = threading.Thread(target=read, name="oaim-batches", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                code = exit_code()
                if code != 0:
                    raise RuntimeError(f"the parsing process exited with code {code}") from None
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.error is not None:
                return
    finally:
        stop.set()
        reader.join()


def _batches_in_fork(
    adapter: Any, todo: list, stats: dict, options: dict, pricer_factory: Any, sizes: tuple
) -> Iterator[Batch]:
    """The same parsing process, forked from a single-threaded process: it starts in milliseconds
    instead of the half second an interpreter takes to start and import the package."""
    from multiprocessing import Pipe

    from .fork_ingest import fork_child, kill_child, widen_pipe

    recv, send = Pipe(duplex=False)
    widen_pipe(send.fileno())
    pid = fork_child(partial(_worker, send, adapter, todo, stats, options, pricer_factory, sizes), [recv])
    send.close()

    def reaped() -> int:
        nonlocal pid
        _, status = os.waitpid(pid, 0)
        pid = 0
        return os.waitstatus_to_exitcode(status)

    try:
        yield from _received(recv, reaped)
    finally:
        recv.close()
        if pid:
            kill_child(pid)
