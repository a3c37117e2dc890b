/*
 * bench/measure.c - runs one bench client and measures it, like `/usr/bin/time -f "%e %U %S %M"`
 * (which a fresh Debian machine may not have) plus a sampler for multi-process clients:
 *
 *   measure OUTFILE INTERVAL_MS COMMAND [ARGS...]
 *
 * Forks and execs COMMAND, then until it exits, every INTERVAL_MS (0: never) sums Pss and Rss
 * (/proc/PID/smaps_rollup) over the whole process tree under it (children found through
 * /proc/PID/task/TID/children) and keeps the largest sums. When it exits, wait4(2) gives its
 * rusage. Writes one JSON line to OUTFILE:
 *
 *   wall      seconds, CLOCK_MONOTONIC from fork to exit
 *   user, sys CPU seconds of COMMAND and all its waited-for descendants (ru_utime, ru_stime)
 *   maxrss_kb ru_maxrss: the peak RSS (VmHWM) of the largest single process in the tree; for a
 *             one-process client, its peak RSS exactly
 *   tree_pss_kb, tree_rss_kb  the largest sampled sums over the tree (0 without sampling); Pss
 *             counts a page shared by k processes as 1/k in each, so shared libraries count once
 *   samples, status (the exit status, or 128 + signal)
 *
 * Exits with COMMAND's status. Linux only (procfs).
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Adds Pss and Rss (kB) of pid, then recurses into its children. */
static void sample_tree(long pid, long *pss, long *rss, int depth)
{
    char path[64], line[256];
    FILE *f;
    DIR *d;
    struct dirent *e;
    if (depth > 16) return;
    snprintf(path, sizeof path, "/proc/%ld/smaps_rollup", pid);
    if ((f = fopen(path, "r")) != NULL) {
        while (fgets(line, sizeof line, f)) {
            long v;
            if (sscanf(line, "Pss: %ld", &v) == 1) *pss += v;
            else if (sscanf(line, "Rss: %ld", &v) == 1) *rss += v;
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    if ((d = opendir(path)) == NULL) return;
    while ((e = readdir(d)) != NULL) {
        char cpath[320];
        long child;
        if (e->d_name[0] == '.') continue;
        snprintf(cpath, sizeof cpath, "/proc/%ld/task/%s/children", pid, e->d_name);
        if ((f = fopen(cpath, "r")) == NULL) continue;
        while (fscanf(f, "%ld", &child) == 1) sample_tree(child, pss, rss, depth + 1);
        fclose(f);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    const char *outfile;
    long interval_ms, max_pss = 0, max_rss = 0, samples = 0;
    double t0, wall;
    pid_t pid;
    int status = 0, code;
    struct rusage ru;
    FILE *out;
    if (argc < 4) {
        fprintf(stderr, "usage: measure OUTFILE INTERVAL_MS COMMAND [ARGS...]\n");
        return 2;
    }
    outfile = argv[1];
    interval_ms = atol(argv[2]);
    t0 = now();
    pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        execvp(argv[3], argv + 3);
        perror(argv[3]);
        _exit(127);
    }
    memset(&ru, 0, sizeof ru);
    for (;;) {
        pid_t r = wait4(pid, &status, interval_ms > 0 ? WNOHANG : 0, &ru);
        if (r == pid) break;
        if (r < 0) { perror("wait4"); return 2; }
        {
            long pss = 0, rss = 0;
            struct timespec ts;
            sample_tree((long)pid, &pss, &rss, 0);
            samples++;
            if (pss > max_pss) max_pss = pss;
            if (rss > max_rss) max_rss = rss;
            ts.tv_sec = interval_ms / 1000;
            ts.tv_nsec = (interval_ms % 1000) * 1000000L;
            nanosleep(&ts, NULL);
        }
    }
    wall = now() - t0;
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    out = fopen(outfile, "w");
    if (!out) { perror(outfile); return 2; }
    fprintf(out, "{\"wall\":%.6f,\"user\":%.6f,\"sys\":%.6f,\"maxrss_kb\":%ld,\"tree_pss_kb\":%ld,"
                 "\"tree_rss_kb\":%ld,\"samples\":%ld,\"status\":%d}\n",
            wall, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss, max_pss, max_rss,
            samples, code);
    fclose(out);
    return code;
}
