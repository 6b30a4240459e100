"""Pushes a steady stream of groups through Python's prometheus_client, the way many Python batch jobs would, and
prints one line per push until its standard input closes:

    stream.py URL RATE GROUPS WORKERS
    -> <unix ms when the push ended> - ok|error|skipped <unix ms when it started> [<error>]

RATE pushes a second are spread over GROUPS groups (job "stream", label instance=g<N>) and run by WORKERS threads;
a push that finds every worker busy is printed as "skipped". Python's client cannot follow a 307: it needs the
director in proxy mode, so the node a push reached is unknown here ("-").
"""
import queue
import sys
import threading
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway


def now_ms():
    return int(time.time() * 1000)


def main():
    url = sys.argv[1]
    rate, groups, workers = (int(arg) for arg in sys.argv[2:5])
    lock = threading.Lock()

    def emit(line):
        with lock:
            sys.stdout.write(f"{now_ms()} - {line}\n")
            sys.stdout.flush()

    jobs = queue.Queue(maxsize=workers)

    def work():
        while True:
            n = jobs.get()
            if n is None:
                return
            registry = CollectorRegistry()
            Gauge("e2e_value", "The value an end-to-end spec pushed.", registry=registry).set(n)
            started = now_ms()
            try:
                push_to_gateway(url, job="stream", registry=registry, grouping_key={"instance": f"g{n % groups}"}, timeout=10)
                emit(f"ok {started}")
            except Exception as error:  # noqa: BLE001: every failure is a record
                emit(f"error {started} {type(error).__name__}: {str(error).replace(chr(10), ' ')}")

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    period = 1.0 / rate
    next_at = time.monotonic()
    n = 0
    while not stop.is_set():
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            jobs.put_nowait(n)
        except queue.Full:
            emit(f"skipped {now_ms()}")
        n += 1
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
