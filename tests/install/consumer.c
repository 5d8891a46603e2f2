#include <futureproof.h>
#include <stdio.h>
int main(void) { fp_executor *ex; return fp_thread_pool_new(NULL, &ex) || printf("futureproof %s\n", fp_version_string()) < 0 || fp_executor_free(ex); }
