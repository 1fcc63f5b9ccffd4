// LD_PRELOAD library: the first write to fd 2 is made, then the writing
// thread sleeps HOLD_MS milliseconds (default 1500). Holds a process alive
// right after it printed an error, so that a test can look at what it
// still holds then (before its exit cleans up).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    ssize_t r = real(fd, buf, n);
    static int held;
    if (fd == 2 && !__atomic_exchange_n(&held, 1, __ATOMIC_SEQ_CST)) {
        const char *ms = getenv("HOLD_MS");
        long m = ms ? atol(ms) : 1500;
        struct timespec t = {m / 1000, (m % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    return r;
}
