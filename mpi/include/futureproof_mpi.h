/* futureproof_mpi.h - an executor whose workers are MPI ranks
 * (libfutureproof-mpi, optional: built when an MPI implementation is
 * found). fp_submit, fp_submit_bytes, fp_map (chunked), fp_wait,
 * fp_as_completed and the task manager work on it as on any executor.
 *
 * Tasks cross by name: a function must be registered (fp_task_register,
 * FP_TASK_REGISTER) in the program, which every rank runs; submitting one
 * that is not is FP_EINVAL. With fp_submit the argument's value crosses
 * (use it for integers) and so does the result's; with fp_submit_bytes the
 * bytes do, both ways, of any size. Ranks are assumed to share one
 * architecture (byte order, word size).
 *
 * Each worker rank runs its tasks in a local futureproof process pool, so
 * a task that crashes, exits or runs past task_timeout fails only its own
 * future (FP_ECRASHED, FP_ETIMEDOUT, naming the rank and the host), and the
 * rank goes on serving; cancelling a running task kills its local worker
 * process. MPI is called by one thread at a time on each rank:
 * MPI_THREAD_SERIALIZED is enough. */
#ifndef FUTUREPROOF_MPI_H
#define FUTUREPROOF_MPI_H

#include <futureproof.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_mpi_options {
  int tasks_per_worker;      /* units of work in flight on each worker rank (default 4) */
  int local_workers;         /* processes (threads) each worker rank runs tasks in (default 1) */
  /* Run tasks in worker processes on each rank (default true): a crash, an
   * exit, a timeout or a cancel fails only its task. false: in threads of
   * the rank itself -- faster (no process hop), but a crash takes the rank
   * and with it the MPI job, task_timeout is not enforced, and a cancelled
   * running task only sees fp_cancel_requested. */
  bool isolate;
  double task_timeout;       /* seconds a unit (a task, or fp_map's chunk) may run; 0: none */
  int max_workers;           /* spawn mode: worker processes to start (default 1) */
  const char *worker_program; /* spawn mode: the program to start (default: this one) */
  /* The root: what tasks send with fp_mpi_stream, for the future of the
   * task that sent it, in the order sent and before the future completes.
   * Called in whichever root thread receives it, with MPI held: be quick,
   * and do not submit to this executor nor wait on it. NULL: dropped. */
  void (*on_stream)(fp_future *f, const void *data, size_t len, void *userdata);
  void *stream_userdata;
} fp_mpi_options;
FP_EXTERN void fp_mpi_options_init(fp_mpi_options *opt);

/* Initialise MPI (MPI_Init_thread, asking for MPI_THREAD_MULTIPLE and
 * accepting MPI_THREAD_SERIALIZED) -- call it first in main, on every
 * rank. In a process started by spawn mode it serves tasks, finalises MPI
 * and exits 0: it does not return there. FP_EINVAL if MPI gives less than
 * MPI_THREAD_SERIALIZED. */
FP_EXTERN int fp_mpi_init(int *argc, char ***argv);

/* Comm mode (mpiexec -n N ./app), collective over comm: on the root rank,
 * *out is an executor whose workers are the other ranks; every other rank
 * serves tasks until the root's executor is shut down, then returns 0
 * with *out == NULL. The same main works on every rank:
 *
 *   fp_mpi_init(&argc, &argv);
 *   fp_executor *ex;
 *   if (fp_mpi_comm_executor_new(MPI_COMM_WORLD, 0, NULL, &ex) == 0 && ex) {
 *     ... submit, map, wait ...
 *     fp_executor_free(ex);
 *   }
 *   MPI_Finalize();
 *
 * FP_EINVAL for a bad root or a comm of one rank; FP_ENOMEM. opt may be
 * NULL for the defaults. */
FP_EXTERN int fp_mpi_comm_executor_new(MPI_Comm comm, int root, const fp_mpi_options *opt,
                                       fp_executor **out);

/* Spawn mode: start opt->max_workers processes of opt->worker_program
 * (default: this program) with MPI_Comm_spawn; they must call
 * fp_mpi_init first. Not collective: call it on one rank. */
FP_EXTERN int fp_mpi_spawn_executor_new(const fp_mpi_options *opt, fp_executor **out);

/* Inside a task running on a worker rank in the rank's own threads
 * (isolate = false): send len bytes of data to the root now, ahead of the
 * task's result (a job's output as it comes, progress); the root's
 * on_stream gets them. 0; FP_EINVAL (and a warning) anywhere else, a
 * worker process of an isolated rank included; FP_ENOMEM. */
FP_EXTERN int fp_mpi_stream(const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* FUTUREPROOF_MPI_H */
