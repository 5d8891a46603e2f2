/* serial_executor.h - an executor built outside the library, on its public
 * executor interface only (futureproof/executor.h): one thread runs the
 * tasks one at a time, in submission order. */
#ifndef SERIAL_EXECUTOR_H
#define SERIAL_EXECUTOR_H

#include <futureproof.h>

/* A serial executor; free it with fp_executor_free. FP_ENOMEM. */
int serial_executor_new(fp_executor **out);

#endif
