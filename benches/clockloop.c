/* clockloop CLOCK N: N clock_gettime(CLOCK) calls (0 realtime, 1
 * monotonic), through glibc (the vDSO where it can); prints ns_per_call=. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    clockid_t clock = argc > 1 && atoi(argv[1]) == 1 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
    long n = argc > 2 ? atol(argv[2]) : 100000;
    struct timespec t0, t1, ts;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) clock_gettime(clock, &ts);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("ns_per_call=%.1f\n", ns / n);
    return 0;
}
