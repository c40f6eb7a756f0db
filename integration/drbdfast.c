/* drbdadm for the bench: a ~0.3 ms client of the warm drbdadm stand-in (integration/drbdserve.py).
 *
 * Why it exists: the real drbdadm is a C program that answers in ~2 ms; the Python stand-in
 * (integration/bin/drbdadm) needs ~10 ms a call just to start an interpreter, and a planned
 * switchover makes three calls.  The bench measures HA daemons, not interpreter start-up, so
 * there this client hands the call to a server that has the stand-in's code already loaded:
 * it forks, runs exactly the same drbdsim code with this process's stdin/stdout/stderr, in
 * this process's mount namespace's view, and sends back the exit code, which we exit with.
 *
 * Request (one stream connection to $HAFD_DRBD_SERVER): a little-endian u32 length, then
 * NUL-terminated strings: the number of arguments, the arguments, then HAFD_DRBD_* and
 * PATH as KEY=VALUE.  Our fds 0, 1 and 2 travel as SCM_RIGHTS with the first byte.
 * Reply: a little-endian i32 exit code.  Trouble of the stand-in itself exits 20, as the
 * Python stand-in's does (drbdadm's own usage-error code).
 *
 * The test bed compiles one copy per node with -DHAFD_NODE, -DHAFD_STATE and -DHAFD_SERVER
 * and installs it as that node's /etc/hafd/drbdadm: no wrapper script (a shell costs another
 * ~0.5 ms a call), and the environment, when it sets them, still wins.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define EXIT_STANDIN 20

extern char **environ;

static char *buf;
static size_t len, cap;

static int fail(const char *what, const char *path) {
    fprintf(stderr, "drbd stand-in: %s%s%s: %s\n", what, path ? " " : "", path ? path : "", strerror(errno));
    return EXIT_STANDIN;
}

static int add(const char *s) {
    size_t n = strlen(s) + 1;
    if (len + n > cap) {
        size_t want = (len + n) * 2;
        char *grown = realloc(buf, want);
        if (!grown)
            return -1;
        buf = grown;
        cap = want;
    }
    memcpy(buf + len, s, n);
    len += n;
    return 0;
}

/* A compiled-in default for HAFD_DRBD_<key>, unless the environment has one (then environ carries it). */
static int add_default(const char *key, const char *value) {
    char name[64];
    snprintf(name, sizeof name, "HAFD_DRBD_%s", key);
    if (!value || getenv(name))
        return 0;
    size_t n = strlen(name) + 1 + strlen(value) + 1;
    char *item = malloc(n);
    if (!item)
        return -1;
    snprintf(item, n, "%s=%s", name, value);
    int rc = add(item);
    free(item);
    return rc;
}

#ifndef HAFD_NODE
#define HAFD_NODE NULL
#endif
#ifndef HAFD_STATE
#define HAFD_STATE NULL
#endif
#ifndef HAFD_SERVER
#define HAFD_SERVER NULL
#endif

int main(int argc, char **argv) {
    const char *path = getenv("HAFD_DRBD_SERVER");
    if (!path || !*path)
        path = HAFD_SERVER;
    if (!path || !*path) {
        fputs("drbd stand-in: HAFD_DRBD_SERVER is not set\n", stderr);
        return EXIT_STANDIN;
    }
    /* A closed standard fd cannot be passed on; the stand-in would then write into whatever
       it opens first.  Give it /dev/null, as a shell would have. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd ? O_WRONLY : O_RDONLY) != fd)
            return fail("cannot open", "/dev/null");
    }
    cap = 4096;
    len = 4;
    buf = malloc(cap);
    char count[16];
    snprintf(count, sizeof count, "%d", argc - 1);
    if (!buf || add(count) < 0)
        return fail("out of memory", NULL);
    for (int i = 1; i < argc; i++)
        if (add(argv[i]) < 0)
            return fail("out of memory", NULL);
    for (char **e = environ; *e; e++)
        if ((!strncmp(*e, "HAFD_DRBD_", 10) || !strncmp(*e, "PATH=", 5)) && add(*e) < 0)
            return fail("out of memory", NULL);
    if (add_default("NODE", HAFD_NODE) < 0 || add_default("STATE", HAFD_STATE) < 0)
        return fail("out of memory", NULL);
    uint32_t body = (uint32_t)(len - 4);
    memcpy(buf, &body, 4); /* x86-64 and every Debian arch we run on: little-endian */

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return fail("server socket path", path);
    }
    strcpy(addr.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return fail("socket", NULL);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0)
        return fail("cannot reach its server at", path);

    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t sent = sendmsg(s, &msg, MSG_NOSIGNAL);
    if (sent < 0)
        return fail("cannot send the call to", path);
    for (size_t off = (size_t)sent; off < len;) {
        ssize_t n = send(s, buf + off, len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail("cannot send the call to", path);
        }
        off += (size_t)n;
    }

    int32_t code;
    size_t got = 0;
    while (got < sizeof code) {
        ssize_t n = read(s, (char *)&code + got, sizeof code - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "drbd stand-in: its server at %s ended the call without an exit code\n", path);
            return EXIT_STANDIN;
        }
        got += (size_t)n;
    }
    return code & 0xff;
}
