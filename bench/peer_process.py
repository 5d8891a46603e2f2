"""peer_process.py - Python's ProcessPoolExecutor on the workloads of
bench_process.c, printed as "name value" lines for it to read.
Usage: python3 peer_process.py WORKERS ROUND_TRIPS TASKS MAP_ITEMS CHUNKSIZE"""
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def empty(x):
    return x


def square(x):
    return x * x


def main():
    workers, trips, tasks, items, chunk = (int(a) for a in sys.argv[1:6])
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for f in [ex.submit(empty, i) for i in range(workers * 4)]:  # start the workers
            f.result()
        t0 = time.perf_counter()
        for i in range(trips):
            ex.submit(empty, i).result()
        print("round_trip_us", (time.perf_counter() - t0) / trips * 1e6)
        t0 = time.perf_counter()
        for f in [ex.submit(empty, i) for i in range(tasks)]:
            f.result()
        print("throughput_us", (time.perf_counter() - t0) / tasks * 1e6)
        t0 = time.perf_counter()
        total = sum(ex.map(square, range(items), chunksize=chunk))
        print("map_ns", (time.perf_counter() - t0) / items * 1e9)
        assert total == sum(i * i for i in range(items))


if __name__ == "__main__":
    main()
