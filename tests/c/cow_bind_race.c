/* Tries to make unix socket files in a copy-on-write work directory DIR
 * (argv[1], its absolute path) under `--workdir DIR`, where every bind of
 * a DIR name must land in the upper layer. Routes, each ROUNDS (argv[3])
 * times, with a fresh name per bind:
 *   race:    a thread flips the sun_path bytes between OUT/rN (OUT =
 *            argv[2], a directory outside DIR) and DIR/rN while binds run;
 *   outlink: OUT/link -> DIR (a symlink made before the run), bind
 *            OUT/link/oN;
 *   inlink:  DIR/inlink -> DIR (made by the program: in the layer), bind
 *            DIR/inlink/iN.
 * Prints "binds N" (binds that succeeded); the test counts the sockets
 * that appeared in DIR itself. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un addr;
static char a_out[108], a_in[108];
static atomic_int stop;

static void *flip(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        memcpy(addr.sun_path, a_out, sizeof a_out);
        memcpy(addr.sun_path, a_in, sizeof a_in);
    }
    return NULL;
}

static int bind_to(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 2;
    const char *dir = argv[1], *out = argv[2];
    int rounds = atoi(argv[3]), binds = 0;
    char p[108];
    addr.sun_family = AF_UNIX;
    pthread_t t;
    for (int i = 0; i < rounds; i++) {
        snprintf(a_out, sizeof a_out, "%s/r%d", out, i);
        snprintf(a_in, sizeof a_in, "%s/r%d", dir, i);
        memcpy(addr.sun_path, a_out, sizeof a_out);
        atomic_store(&stop, 0);
        pthread_create(&t, NULL, flip, NULL);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        binds += bind(s, (struct sockaddr *)&addr, sizeof addr) == 0;
        close(s);
        atomic_store(&stop, 1);
        pthread_join(t, NULL);
    }
    for (int i = 0; i < rounds; i++) {
        snprintf(p, sizeof p, "%s/link/o%d", out, i);
        binds += bind_to(p);
    }
    snprintf(p, sizeof p, "%s/inlink", dir);
    if (symlink(dir, p) != 0)
        perror("symlink");
    for (int i = 0; i < rounds; i++) {
        snprintf(p, sizeof p, "%s/inlink/i%d", dir, i);
        binds += bind_to(p);
    }
    printf("binds %d\n", binds);
    return 0;
}
