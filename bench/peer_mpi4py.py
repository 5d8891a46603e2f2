"""peer_mpi4py.py - the MPI peer for bench_mpi: mpi4py.futures'
MPICommExecutor on the same rows (run under mpirun with 3 ranks: 2 workers).
Prints one line: round_trip_us throughput_us map_item_us idle_cpu_percent."""
import os
import resource
import sys
import time

from mpi4py import MPI
from mpi4py.futures import MPICommExecutor


def empty(x):
    return x


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    n_round = int(os.environ.get("ROUND_TRIPS", "2000"))
    n_tasks = int(os.environ.get("TASKS", "100000"))
    n_map = int(os.environ.get("MAP_ITEMS", "1000000"))
    idle_s = float(os.environ.get("IDLE_S", "5"))
    comm = MPI.COMM_WORLD
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    with MPICommExecutor(comm, root=0) as ex:
        if ex is not None:
            ex.submit(empty, 0).result()  # warm up
            # the median of 15 batches, as bench_mpi.c
            batches = []
            for _ in range(15):
                t = time.perf_counter()
                for i in range(n_round // 15):
                    ex.submit(empty, i).result()
                batches.append((time.perf_counter() - t) * 1e6 / (n_round // 15))
            round_trip = sorted(batches)[7]
            t = time.perf_counter()
            fs = [ex.submit(empty, i) for i in range(n_tasks)]
            for f in fs:
                f.result()
            throughput = (time.perf_counter() - t) * 1e6 / n_tasks
            t = time.perf_counter()
            for _ in ex.map(empty, range(n_map), chunksize=1000):
                pass
            map_item = (time.perf_counter() - t) * 1e6 / n_map
    # idle: a new executor that gets no work for idle_s; the workers' CPU
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    with MPICommExecutor(comm, root=0) as ex:
        if ex is not None:
            time.sleep(idle_s)
    busy = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0) * 100
    worst = comm.reduce(busy if comm.Get_rank() != 0 else 0.0, op=MPI.MAX, root=0)
    if comm.Get_rank() == 0:
        print(f"{round_trip:.2f} {throughput:.2f} {map_item:.4f} {worst:.1f}")
        sys.stdout.flush()


main()
