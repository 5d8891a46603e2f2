"""peer_threads.py - Python's ThreadPoolExecutor on bench_dispatch's
workloads, printed per item in the same "benchmark workers value" lines.
bench_dispatch gives it as many tasks for throughput as everyone, fewer
elsewhere (Python is ~100x slower).
Usage: python3 peer_threads.py TASKS TRIPS MAP_ITEMS AS_COMPLETED WORKERS..."""
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed


def empty(x):
    return x


def report(name, workers, value):
    print(f"{name} {workers} {value:.3f}", flush=True)


def main():
    tasks, trips, map_items, ac_items = (int(a) for a in sys.argv[1:5])
    workers = [int(a) for a in sys.argv[5:]] or [2]
    # as_completed first: its peak memory is measured from a fresh start
    with ThreadPoolExecutor(max_workers=2) as ex:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        fs = [ex.submit(empty, i) for i in range(ac_items)]
        n = sum(1 for _ in as_completed(fs))
        report("as_completed", 2, (time.perf_counter() - t0) / ac_items * 1e9)
        assert n == ac_items
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report("as_completed_bytes", 2, (rss1 - rss0) * 1024 / ac_items)
        del fs
    for w in workers:
        with ThreadPoolExecutor(max_workers=w) as ex:
            t0 = time.perf_counter()
            for f in [ex.submit(empty, i) for i in range(tasks)]:
                f.result()
            report("throughput", w, (time.perf_counter() - t0) / tasks * 1e9)
    with ThreadPoolExecutor(max_workers=2) as ex:
        ex.submit(empty, 0).result()
        t0 = time.perf_counter()
        for i in range(trips):
            ex.submit(empty, i).result()
        report("round_trip", 2, (time.perf_counter() - t0) / trips * 1e9)
        t0 = time.perf_counter()
        total = sum(ex.map(empty, range(map_items)))
        report("map", 2, (time.perf_counter() - t0) / map_items * 1e9)
        assert total == sum(range(map_items))


if __name__ == "__main__":
    main()
