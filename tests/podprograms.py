"""Tiny static programs the pod tests run in containers (no shell in any image), and their build.

APP_C prints numbered lines to stdout, one to stderr and $GREETING, writes a file
(argv[1]) through a hostPath mount, then sleeps; PAUSE_C is a pod sandbox's pause.
tests.ociimage builds them into images.
"""

from __future__ import annotations

APP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *out = argc > 1 ? argv[1] : "/data/out";
    const char *greeting = getenv("GREETING");
    for (int i = 0; i < 3; i++) {
        printf("pod line %d\n", i);
        fflush(stdout);
    }
    fprintf(stderr, "pod stderr %s\n", greeting ? greeting : "(no GREETING)");
    FILE *f = fopen(out, "w");
    if (!f) { perror(out); return 1; }
    fprintf(f, "written by the pod\n");
    fclose(f);
    for (;;) sleep(3600);
}
"""

PAUSE_C = r"""
#include <unistd.h>
int main(void) { for (;;) pause(); }
"""

# VOLUMES_C: writes argv[1] (a file in an emptyDir), reads it back and prints it with the
# filesystem type it is on, prints the first part of the token at argv[2] (a projected
# volume) and that filesystem's type; then, with a port in argv[3], answers every TCP
# connection on it with one line (a hostPort's target), else sleeps.
VOLUMES_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <netinet/in.h>
#define TMPFS_MAGIC 0x01021994
static const char *fs(const char *path) {
    struct statfs s;
    if (statfs(path, &s) != 0) return "unknown";
    return s.f_type == TMPFS_MAGIC ? "tmpfs" : "not tmpfs";
}
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: volumes FILE TOKEN PORT\n"); return 2; }
    char buf[4096];
    FILE *f = fopen(argv[1], "w");
    if (!f) { perror(argv[1]); return 1; }
    fprintf(f, "kept in memory\n");
    fclose(f);
    f = fopen(argv[1], "r");
    if (!f || !fgets(buf, sizeof buf, f)) { perror(argv[1]); return 1; }
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    printf("emptyDir: %s (%s)\n", buf, fs(argv[1]));
    f = fopen(argv[2], "r");
    if (!f || !fgets(buf, sizeof buf, f)) { perror(argv[2]); return 1; }
    fclose(f);
    buf[strcspn(buf, ".")] = 0;
    printf("projected token: %s (%s)\n", buf, fs(argv[2]));
    fflush(stdout);
    int port = atoi(argv[3]);
    if (port <= 0) for (;;) sleep(3600);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 8) != 0) { perror("listen"); return 1; }
    printf("listening on %d\n", port);
    fflush(stdout);
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        const char *msg = "hello from the pod network\n";
        write(c, msg, strlen(msg));
        close(c);
    }
}
"""
