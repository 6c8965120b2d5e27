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
