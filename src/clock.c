/* clock.c - monotonic deadlines and the timed condition-variable wait that
 * every blocking call of the library uses. */
#include "internal.h"

#include <errno.h>
#include <math.h>

int fp__check_timeout(double timeout_s, const char *fn) {
  if (isnan(timeout_s)) return fp__einval("%s: the timeout is NaN", fn);
  return 0;
}

double fp__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

fp__deadline fp__deadline_in(double timeout_s) {
  fp__deadline d = {{0, 0}, false};
  if (timeout_s < 0 || isnan(timeout_s) || timeout_s > 1e9) {
    d.infinite = true;
    return d;
  }
  clock_gettime(CLOCK_MONOTONIC, &d.at);
  double whole = floor(timeout_s);
  d.at.tv_sec += (time_t)whole;
  d.at.tv_nsec += (long)((timeout_s - whole) * 1e9);
  if (d.at.tv_nsec >= 1000000000L) {
    d.at.tv_sec++;
    d.at.tv_nsec -= 1000000000L;
  }
  return d;
}

double fp__deadline_remaining(const fp__deadline *d) {
  if (d->infinite) return -1;
  double left = (double)d->at.tv_sec + (double)d->at.tv_nsec * 1e-9 - fp__now();
  return left > 0 ? left : 0;
}

bool fp__deadline_passed(const fp__deadline *d) {
  if (d->infinite) return false;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > d->at.tv_sec ||
         (now.tv_sec == d->at.tv_sec && now.tv_nsec >= d->at.tv_nsec);
}

int fp__cond_init(pthread_cond_t *cv) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr)) return FP_ENOMEM;
  int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (!rc) rc = pthread_cond_init(cv, &attr);
  pthread_condattr_destroy(&attr);
  return rc ? FP_ENOMEM : 0;
}

int fp__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, const fp__deadline *d) {
  if (d->infinite) return pthread_cond_wait(cv, mu);
  return pthread_cond_timedwait(cv, mu, &d->at);
}
