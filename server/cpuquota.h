/*
 * cpuquota.h - how many CPUs this process may use: the cgroup CPU quota.
 *
 * A container's CPU limit is a cgroup quota (Kubernetes `resources.limits.cpu`,
 * `docker run --cpus`), not fewer online CPUs: sysconf sees the node's. This
 * module reads the quota of the cgroup the process is in, and of each of its
 * ancestors up to the hierarchy's mount point (the smallest wins): cgroup v2
 * `cpu.max` ("max 100000" = no limit, "200000 100000" = 2 CPUs) and v1
 * `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = no limit), finding the
 * cgroup in /proc/self/cgroup and the hierarchies in /proc/self/mountinfo.
 * TXMAIL_HTTP_THREADS and TXMAIL_WORKERS default to the quota rounded up,
 * at least 1, at most the usable CPUs (online, and this process's affinity).
 *
 * The parsers are pure; cpuquota_detect reads files only, under a root that
 * tests point at a directory of sample files. Nothing here logs, and a file
 * that is missing or malformed only means "no limit found there".
 */
#ifndef SERVER_CPUQUOTA_H
#define SERVER_CPUQUOTA_H

#include <stddef.h>

#define CPUQUOTA_BASIS_MAX 320

struct cpuquota {
	double cpus;        /* the smallest quota found, in CPUs (quota / period); 0: none */
	int usable;         /* the usable CPUs given to cpuquota_detect */
	int count;          /* cpuquota_count(cpus, usable): what the defaults use */
	char basis[CPUQUOTA_BASIS_MAX];  /* where count came from, for config check and the log */
};

/*
 * cpuquota_parse_max - a cgroup v2 cpu.max text ("$MAX $PERIOD", MAX a
 * number or "max", PERIOD optional: 100000; one trailing newline). 0 with
 * *cpus = MAX / PERIOD, or 0 for "max"; -1 when malformed (PERIOD 0 too).
 */
int cpuquota_parse_max(const char *text, size_t len, double *cpus);

/*
 * cpuquota_parse_cfs - cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us
 * texts (each a whole number, one trailing newline). 0 with *cpus = quota /
 * period, or 0 when quota is negative (-1: no limit); -1 when malformed.
 */
int cpuquota_parse_cfs(const char *quota, size_t qlen, const char *period, size_t plen,
    double *cpus);

/* cpuquota_count - cpus rounded up, at least 1, at most usable (cpus 0: usable; usable < 1: 1). */
int cpuquota_count(double cpus, int usable);

/*
 * cpuquota_detect - fill out for this process: root "" reads the real
 * /proc and /sys, else root is a directory standing for "/" (tests).
 * usable: the CPUs the process may run on (cpuquota_usable()).
 */
void cpuquota_detect(const char *root, int usable, struct cpuquota *out);

/* cpuquota_usable - online CPUs, or fewer when this process's affinity allows fewer; at least 1. */
int cpuquota_usable(void);

#endif
