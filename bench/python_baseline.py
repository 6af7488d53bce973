#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
"""shmq-bench's Python baseline: one scenario through multiprocessing, printed as one JSON line.

shmq-bench runs this script once per repetition of each Python scenario and reads its output;
it follows the same protocol as the C++ transports, so the figures compare directly:

  throughput  N producer and N consumer processes (fork start method). They get ready, then all
              start on one event. Producers send until `duration` has passed, then one end
              marker (None, or b"" on a Pipe); each consumer receives until it gets a marker and
              notes the time. Figure: messages received / (last consumer's end - start).
              Queue and SimpleQueue are shared by all N->N processes (MPMC); Pipe is point to
              point (one Pipe(duplex=False) per producer/consumer pair).
  latency     one pinger, one ponger: round trips of one message, each one timed.

A throughput run's producers always outrun its consumers, so an unbounded Queue would grow its
feeder's buffer for as long as they run (and then take seconds to drain): shmq-bench passes
--maxsize, so put blocks instead, as it does for shmq's Queue. Latency runs use Queue().

Payloads: `bytes` sends a bytes object of `size` bytes (Pipe: send_bytes/recv_bytes); `record`
sends the tuple (17, 3.25, "worker-17", "x" * 32), the fields of shmq-bench's record struct.

Output: {"status": "ok", "messages": ..., "seconds": ..., "python": "3.11.7"} for throughput,
{"status": "ok", "samples": ..., "p50_ns": ..., "p99_ns": ..., "p999_ns": ...} for latency, or
{"status": "error"|"timeout", "note": "..."}. Exit status 0 when the JSON says ok.
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time

RECORD = (17, 3.25, "worker-17", "x" * 32)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transport", choices=["queue", "simplequeue", "pipe"], required=True)
    p.add_argument("--kind", choices=["bytes", "record"], default="bytes")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--maxsize", type=int, default=0, help="Queue(maxsize); 0 = unbounded")
    p.add_argument("--mode", choices=["throughput", "latency"], default="throughput")
    p.add_argument("--duration", type=float, default=0.3)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--max-samples", type=int, default=2000000)
    p.add_argument("--cpus", default="", help="pin child k to the k-th CPU of this list (a,b,...)")
    return p.parse_args()


def emit(obj):
    obj.setdefault("python", platform.python_version())
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Channel:
    """One one-way channel: put/get callables and the end marker they use."""

    def __init__(self, ctx, transport, kind, maxsize=0):
        if transport == "pipe":
            r, w = ctx.Pipe(duplex=False)
            if kind == "bytes":
                self.put, self.get, self.marker = w.send_bytes, r.recv_bytes, b""
            else:
                self.put, self.get, self.marker = w.send, r.recv, None
        else:
            q = ctx.Queue(maxsize) if transport == "queue" else ctx.SimpleQueue()
            self.put, self.get, self.marker = q.put, q.get, None
            self.queue = q

    def finish(self):
        # A Queue producer's items may still be in its feeder thread: deliver them first.
        q = getattr(self, "queue", None)
        if q is not None and hasattr(q, "join_thread"):
            q.close()
            q.join_thread()


def message(kind, size):
    return b"x" * size if kind == "bytes" else RECORD


def is_end(m, marker):
    return m is None if marker is None else len(m) == 0


def producer(ch, msg, ready, go, start, duration):
    put = ch.put
    # Check the clock every `batch` messages, but at least every 64 KiB sent.
    batch = max(1, min(16, 65536 // max(1, len(msg) if isinstance(msg, bytes) else 64)))
    ready.release()
    go.wait()
    end = start.value + duration
    clock = time.monotonic
    n = 0
    while True:
        for _ in range(batch):
            put(msg)
        n += batch
        if clock() >= end:
            break
    put(ch.marker)
    ch.finish()


def consumer(ch, slot, counts, ends, ready, go):
    get, marker = ch.get, ch.marker
    ready.release()
    go.wait()
    n = 0
    if marker is None:
        while get() is not None:
            n += 1
    else:
        while len(get()) != 0:
            n += 1
    counts[slot] = n
    ends[slot] = time.monotonic()


def pinger(tx, rx, msg, ready, go, duration, max_samples, out):
    put, get = tx.put, rx.get
    ready.release()
    go.wait()
    clock = time.perf_counter_ns
    warm_end = time.monotonic() + 0.02
    for _ in range(1000):
        put(msg)
        get()
        if time.monotonic() >= warm_end:
            break
    samples = []
    end = time.monotonic() + duration
    while len(samples) < max_samples:
        t0 = clock()
        put(msg)
        get()
        t1 = clock()
        samples.append(t1 - t0)
        if time.monotonic() >= end:
            break
    put(tx.marker)
    tx.finish()
    samples.sort()
    k = len(samples)
    at = lambda q: samples[min(k - 1, int(q * k))]
    out.put((k, at(0.5), at(0.99), at(0.999)))


def ponger(rx, tx, ready, go):
    get, put, marker = rx.get, tx.put, rx.marker
    ready.release()
    go.wait()
    while True:
        m = get()
        if is_end(m, marker):
            break
        put(m)
    tx.finish()


def wait_all(procs, deadline):
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    return all(p.exitcode is not None for p in procs)


def kill_all(procs):
    for p in procs:
        if p.exitcode is None:
            p.kill()
    for p in procs:
        p.join(1)


def pinned(target, cpu):
    """target, run on one CPU (shmq-bench --pin); cpu None = anywhere."""
    if cpu is None:
        return target

    def run_pinned(*a):
        os.sched_setaffinity(0, {cpu})
        target(*a)
    return run_pinned


def run(args):
    ctx = mp.get_context("fork")
    cpus = [int(c) for c in args.cpus.split(",") if c != ""]
    cpu = lambda k: cpus[k % len(cpus)] if cpus else None
    msg = message(args.kind, args.size)
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    start = ctx.RawValue("d", 0.0)
    procs = []
    if args.mode == "latency":
        ping_ch, pong_ch = Channel(ctx, args.transport, args.kind), Channel(ctx, args.transport, args.kind)
        out = ctx.SimpleQueue()
        procs.append(ctx.Process(target=pinned(ponger, cpu(1)), args=(ping_ch, pong_ch, ready, go), daemon=True))
        procs.append(ctx.Process(target=pinned(pinger, cpu(0)), args=(ping_ch, pong_ch, msg, ready, go, args.duration,
                                                      args.max_samples, out), daemon=True))
    else:
        n = args.pairs
        counts = ctx.RawArray("q", n)
        ends = ctx.RawArray("d", n)
        shared = args.transport != "pipe"
        chans = [Channel(ctx, args.transport, args.kind, args.maxsize)] * n if shared else \
            [Channel(ctx, args.transport, args.kind) for _ in range(n)]
        for i in range(n):
            procs.append(ctx.Process(target=pinned(consumer, cpu(2 * i)), args=(chans[i], i, counts, ends, ready, go), daemon=True))
        for i in range(n):
            procs.append(ctx.Process(target=pinned(producer, cpu(2 * i + 1)), args=(chans[i], msg, ready, go, start, args.duration),
                                     daemon=True))
    for p in procs:
        p.start()
    deadline = time.monotonic() + 30
    for _ in procs:
        if not ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
            kill_all(procs)
            return {"status": "timeout", "note": "python children not ready within 30 s"}
    t0 = time.monotonic()
    start.value = t0
    go.set()
    deadline = t0 + args.duration + args.timeout
    if not wait_all(procs, deadline):
        kill_all(procs)
        return {"status": "timeout", "note": "no end within %.0f s; children killed" % args.timeout}
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        return {"status": "error", "note": "python child exited with %s" % bad[0]}
    if args.mode == "latency":
        k, p50, p99, p999 = out.get()
        return {"status": "ok", "samples": k, "p50_ns": p50, "p99_ns": p99, "p999_ns": p999}
    total = sum(counts)
    seconds = max(ends) - t0
    if total == 0 or seconds <= 0:
        return {"status": "error", "note": "no message delivered"}
    return {"status": "ok", "messages": total, "seconds": seconds}


def main():
    args = parse_args()
    try:
        result = run(args)
    except Exception as e:  # report, never hang the runner
        result = {"status": "error", "note": "%s: %s" % (type(e).__name__, e)}
    emit(result)
    sys.exit(0 if result["status"] == "ok" else 1)


if __name__ == "__main__":
    main()
