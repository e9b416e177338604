"""Log directories on several cores: forked parsing processes, each reading its share of the files, while
this process writes.

CLI logs are hundreds of small files with few records per MB (Claude Code: ~240 records per MB), so
reading and JSON-parsing them is the cost, not the store. The files are split into shards by the
adapter's ``shard_key`` (Claude Code: the project directory, which holds every copy of a session: resumed
sessions and subagent transcripts), shards are balanced by bytes over the workers, and each worker reads
its files in the import's order with its own ``run`` dict, so every de-duplication decision between files
of one project is the in-process one. A record duplicated across projects (not written by Claude Code)
has the same key in both and is stored once by the store's unique key.

Workers are forked, not spawned: they start in milliseconds and inherit the adapter and the Pricer. Fork
is used only from a single-threaded process (the daemon and the proxy run threads whose locks a fork
would copy) and where ``os.fork`` exists. Each batch reaches the writer priced, as row tuples with its
rollup deltas; each batch is still one store transaction with its files' progress.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .ingest import Batch, produce_batches

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
    total = sum(max(stats[p].st_size - off, 0) for p, off, _ in todo)
    if total < MIN_BYTES:
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


def shards(adapter: Any, todo: list[tuple[Path, int, dict]], stats: dict, n: int) -> list[list]:
    """TODO split into N lists: files with one shard key stay together, shards balanced by bytes
    (largest first onto the lightest worker); each list keeps the import's file order."""
    groups: dict[Any, list[int]] = {}
    for i, (p, _off, _state) in enumerate(todo):
        groups.setdefault(adapter.shard_key(p), []).append(i)
    size = {k: sum(max(stats[todo[i][0]].st_size - todo[i][1], 0) for i in idx) for k, idx in groups.items()}
    loads = [0] * n
    assigned: list[list[int]] = [[] for _ in range(n)]
    for k in sorted(groups, key=lambda k: -size[k]):
        w = loads.index(min(loads))
        loads[w] += size[k]
        assigned[w].extend(groups[k])
    return [[todo[i] for i in sorted(idx)] for idx in assigned if idx]


def _work(conn: Any, adapter: Any, todo: list, stats: dict, options: dict, pricer: Any) -> None:
    # Log batches are a few thousand rows in few (hour, model, project) groups: the pure-Python sum is
    # faster there than numpy (3.7k rows: 4.7 ms against 9.8 ms) and spares each worker numpy's import.
    from ..store.repo import _rollup_deltas_py as rollup_deltas
    from ..store.repo import record_rows, split_constants

    try:
        for b in produce_batches(adapter, todo, stats, options, pricer, batch_files=BATCH_FILES):
            b.rows = record_rows(b.records)
            b.records = []
            b.deltas = rollup_deltas(b.rows) if b.rows else []
            b.rows, b.consts = split_constants(b.rows)
            conn.send(b)
            if b.error is not None:
                return
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the writing process
        from ..domain import ParseReport

        conn.send(Batch([], [], ParseReport(), error=e))


def batches_in_forks(
    adapter: Any,
    todo: list[tuple[Path, int, dict]],
    stats: dict[Path, os.stat_result],
    options: dict[str, Any],
    pricer: Any,
    n: int,
) -> Iterator[Batch]:
    """Batches of TODO read by N forked processes, in the order they are ready. ``done_bytes`` of each
    batch is the total over all workers. A failing file ends the stream with its batch (carrying the
    error and the files its worker read completely before it); the other workers are stopped."""
    from multiprocessing import Pipe
    from multiprocessing.connection import wait

    from .parallel_ingest import _widen

    parts = shards(adapter, todo, stats, n)
    conns: list[Any] = []
    pids: list[int] = []
    try:
        for part in parts:
            recv, send = Pipe(duplex=False)
            _widen(send.fileno())
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the caller's frames
                code = 0
                try:
                    recv.close()
                    for c in conns:
                        c.close()
                    gc.disable()  # big batches, no reference cycles; as in run_import
                    _work(send, adapter, part, stats, options, pricer)
                    send.close()
                except BaseException:  # noqa: BLE001 - the pipe is gone: the writer sees EOF
                    code = 1
                finally:
                    os._exit(code)
            send.close()
            conns.append(recv)
            pids.append(pid)
        done = dict.fromkeys(conns, 0)
        live = list(conns)
        while live:
            for c in wait(live):
                try:
                    b = c.recv()
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
        for c in conns:
            c.close()
        for pid in pids:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
