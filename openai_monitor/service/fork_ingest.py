"""Log directories on several cores: forked parsing processes, each reading its share of the files, while
this process writes.

CLI logs are hundreds of small files with few records per MB (Claude Code: ~240 records per MB), so
reading and JSON-parsing them is the cost, not the store. The files are split into shards by the
adapter's ``shard_key`` (Claude Code: the project directory, which holds every copy of a session: resumed
sessions and subagent transcripts). The workers take shards from a shared queue, largest first, and each
reads a shard's files in the import's order with its own ``run`` dict, so every de-duplication decision
between files of one project is the in-process one. A record duplicated across projects (not written by
Claude Code) has the same key in both and is stored once by the store's unique key.

Workers are forked, not spawned: they start in milliseconds and inherit the adapter (and the Pricer, or
build their own from a factory, all at once). Fork is used only from a single-threaded process (the
daemon and the proxy run threads whose locks a fork would copy) and where ``os.fork`` exists. Each batch
reaches the writer priced, as row tuples with its rollup deltas; each batch is still one store
transaction with its files' progress.
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from .ingest import Batch, bytes_to_read, produce_batches

# Below this many bytes to read, forking costs more than it saves.
MIN_BYTES = 16 * 1024 * 1024
# Files per batch in a worker: small enough that writing overlaps reading, large enough that the
# per-transaction cost (rollup upserts of the batch's hours) stays small.
BATCH_FILES = 64


def worker_count(adapter: Any, todo: list[tuple[Path, int, dict]], stats: dict, parallel: bool) -> int:
    """How many forked parsing processes this import should use (0: read in this process)."""
    if not parallel or getattr(adapter, "shard_key", None) is None or getattr(adapter, "replace", False):
        return 0
    if not hasattr(os, "fork") or _threads() > 1:
        return 0
    cpus = _cpus()
    if cpus < 2 or len(todo) < 2:
        return 0
    if bytes_to_read(todo, stats) < MIN_BYTES:
        return 0
    return min(cpus, 4, len(todo))


def _threads() -> int:
    """Threads running in this process (a fork copies the locks they hold, not the threads)."""
    return threading.active_count()


def _cpus() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def shards(adapter: Any, todo: list[tuple[Path, int, dict]], stats: dict) -> list[list]:
    """TODO split into shards: the files of one shard key each, in the import's file order; the shards
    with the most bytes to read first."""
    groups: dict[Any, list[tuple[Path, int, dict]]] = {}
    for item in todo:
        groups.setdefault(adapter.shard_key(item[0]), []).append(item)
    return sorted(groups.values(), key=lambda part: bytes_to_read(part, stats), reverse=True)


# The work queue: shard numbers as fixed-size integers in a pipe, all written before the workers start.
_ID_BYTES = 4
# At most this many shards: their numbers fill 4 KB, far within any pipe's capacity (Linux 64 KB, macOS
# 16 KB), so writing them all never waits for a reader. More shard keys than that (project directories)
# are merged into this many shards.
MAX_SHARDS = 1024


def work_queue(n: int) -> int:
    """The read end of a pipe holding the shard numbers 0..N-1, its write end closed. Any process reading
    ``_ID_BYTES`` from it takes the next number (a pipe read is atomic; all reads are of that size, so
    none splits a number); once all are taken a read returns b"" (end of file)."""
    r, w = os.pipe()
    try:
        os.write(w, b"".join(i.to_bytes(_ID_BYTES, "big") for i in range(n)))
    finally:
        os.close(w)
    return r


def claimed(fd: int, parts: list[list]) -> Iterator[tuple[Path, int, dict]]:
    """The files of the shards this process takes from the work queue FD, one shard at a time, until
    the queue is empty: a worker that gets more of the machine reads more shards, and the workers end
    together (with a fixed share each, the worker sharing its core with the writer ended up to 0.25 s
    after the other on 210 MB)."""
    while True:
        b = os.read(fd, _ID_BYTES)
        if len(b) != _ID_BYTES:
            return
        yield from parts[int.from_bytes(b, "big")]


def batch_rows(b: Batch, sum_rollups: Callable[[list[tuple] | None, list], list[tuple]]) -> tuple:
    """What a parsing process sends of batch B: ``(rows, deltas, consts)``, its records as row tuples
    without the columns constant in the batch (``split_constants``), their rollup sums by
    ``sum_rollups(rows or None, columns)``, and the constants. B's records and columns are let go."""
    from ..store.repo import record_rows, split_constants

    rows: list[tuple] | None
    if b.columns is not None:  # a CSV file: read as columns, no record objects built
        cols, rows = b.columns, None
    else:
        rows = record_rows(b.records)
        cols = list(zip(*rows))  # one transposition for both uses below
    b.records, b.columns = [], None
    if not (cols and cols[0]):
        return [], [], {}
    deltas = sum_rollups(rows, cols)
    rows, consts = split_constants(rows, cols)
    return rows, deltas, consts


def widen_pipe(fd: int) -> None:
    """Let a pipe hold 1 MB instead of 64 KB (Linux): a batch of 16k rows (~3 MB marshalled) then
    crosses in a few reads instead of fifty, each a switch between the two processes (1M CSV rows:
    receiving took 0.33 s, now 0.13 s)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):  # not Linux, or above the user's pipe-max-size
        pass


def fork_child(run: Callable[[], object], close: Iterable[Any] = ()) -> int:
    """Fork a process that closes CLOSE (the parent's ends of pipes), runs RUN and exits, with code 1 if
    RUN raised (its pipe is then closed: the reader sees EOF). Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's frames
        code = 0
        try:
            for c in close:
                c.close()
            run()
        except BaseException:  # noqa: BLE001 - the pipe is gone: the writer sees EOF
            code = 1
        finally:
            os._exit(code)
    return pid


def kill_child(pid: int) -> None:
    """Stop a forked child that has not finished, and reap it."""
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _work(
    conn: Any,
    adapter: Any,
    todo: Iterable[tuple[Path, int, dict]],
    stats: dict,
    options: dict,
    pricer: Any,
    pricer_factory: Callable[[], Any] | None = None,
) -> None:
    # Log batches are a few thousand rows in few (hour, model, project) groups: the pure-Python sum is
    # faster there than numpy (3.7k rows: 4.7 ms against 9.8 ms) and spares each worker numpy's import.
    from ..store.repo import _rollup_deltas_py

    gc.disable()  # big batches, no reference cycles; as in run_import
    try:
        if pricer is None and pricer_factory is not None:
            pricer = pricer_factory()
        # Columnar: adapters that can (Claude Code) hand over their records as columns, which are priced,
        # summed and sent as such, without an object per record.
        for b in produce_batches(
            adapter, todo, stats, options, pricer, batch_files=BATCH_FILES, columnar=True
        ):
            send_batch(conn, b, batch_rows(b, _rollup_deltas_py))
            if b.error is not None:
                return
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the writing process
        send_failure(conn, e)
    finally:
        conn.close()


def send_batch(conn: Any, b: Batch, rows: tuple) -> None:
    """Send batch B from a parsing process: ROWS ``(rows, deltas, consts)`` marshalled (they hold only
    str, int, float, bool and None: faster than pickle both ways; a 100k-row batch 124 -> 99 ms), then
    the rest of B pickled, pickled first so that a failure to pickle it cannot leave the rows' message
    alone in the pipe."""
    tail = pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)
    conn.send_bytes(marshal.dumps(rows))
    conn.send_bytes(tail)


def send_failure(conn: Any, error: BaseException) -> None:
    """Send an empty batch carrying ERROR (what ended a parsing process)."""
    from ..domain import ParseReport

    conn.send_bytes(marshal.dumps(None))
    conn.send(Batch([], [], ParseReport(), error=error))


def recv_batch(conn: Any) -> Batch:
    """The next batch ``send_batch`` or ``send_failure`` sent on CONN (EOFError once it is closed)."""
    data = marshal.loads(conn.recv_bytes())
    b = conn.recv()
    if data is not None:
        b.rows, b.deltas, b.consts = data
    return b


def batches_in_forks(
    adapter: Any,
    todo: list[tuple[Path, int, dict]],
    stats: dict[Path, os.stat_result],
    options: dict[str, Any],
    pricer: Any,
    n: int,
    *,
    pricer_factory: Callable[[], Any] | None = None,
) -> Iterator[Batch]:
    """Batches of TODO read by N forked processes, in the order they are ready. ``done_bytes`` of each
    batch is the total over all workers. A failing file ends the stream with its batch (carrying the
    error and the files its worker read completely before it); the other workers are stopped. Without
    PRICER, each worker builds its own with PRICER_FACTORY."""
    from multiprocessing import Pipe
    from multiprocessing.connection import wait

    parts = shards(adapter, todo, stats)
    if len(parts) > MAX_SHARDS:
        parts = [[f for part in parts[i::MAX_SHARDS] for f in part] for i in range(MAX_SHARDS)]
    queue = work_queue(len(parts))
    conns: list[Any] = []
    pids: list[int] = []
    try:
        for _ in range(min(n, len(parts))):
            recv, send = Pipe(duplex=False)
            widen_pipe(send.fileno())
            todo_w = claimed(queue, parts)
            work = partial(_work, send, adapter, todo_w, stats, options, pricer, pricer_factory)
            pid = fork_child(work, [recv, *conns])
            send.close()
            conns.append(recv)
            pids.append(pid)
        os.close(queue)
        queue = -1
        done = dict.fromkeys(conns, 0)
        live = list(conns)
        while live:
            for c in wait(live):
                try:
                    b = recv_batch(c)
                except EOFError:
                    live.remove(c)
                    continue
                done[c] = b.done_bytes
                b.done_bytes = sum(done.values())
                yield b
                if b.error is not None:
                    return
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        pids = []
        if any(codes):
            raise RuntimeError(f"a parsing process exited with code {max(codes)}")
    finally:
        if queue >= 0:
            os.close(queue)
        for c in conns:
            c.close()
        for pid in pids:
            kill_child(pid)
