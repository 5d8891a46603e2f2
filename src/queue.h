/* queue.h - private: the one intrusive FIFO queue of the library, a
 * singly linked list with a head and a tail (the waiters' ready lists,
 * the process pool's jobs, the task manager's inputs and task lists). The
 * node carries its link; nothing is allocated. Macros, as BSD's
 * <sys/queue.h>: the same code for every node type. */
#ifndef FP_QUEUE_H
#define FP_QUEUE_H

/* Append node at the tail. */
#define FP__QUEUE_PUSH(head, tail, node, link) \
  do {                                         \
    (node)->link = NULL;                       \
    if (tail)                                  \
      (tail)->link = (node);                   \
    else                                       \
      (head) = (node);                         \
    (tail) = (node);                           \
  } while (0)

/* Drop the head (read it first); the tail follows when it was the last. */
#define FP__QUEUE_SHIFT(head, tail, link) \
  do {                                    \
    (head) = (head)->link;                \
    if (!(head)) (tail) = NULL;           \
  } while (0)

#endif
