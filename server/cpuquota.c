/*
 * cpuquota.c - the cgroup CPU quota of this process (see cpuquota.h).
 *
 * Owns the parsers of cpu.max and cpu.cfs_quota_us/cfs_period_us (pure)
 * and the walk: /proc/self/cgroup names the process's cgroup in each
 * hierarchy (v2: "0::/path"; v1: "N:cpu,cpuacct:/path"), /proc/self/mountinfo
 * says where that hierarchy is mounted and which of its directories the
 * mount shows (its root: "/" in a container with its own cgroup namespace),
 * and from the cgroup's directory up to the mount point every level's quota
 * is read; the smallest is the limit. Reads are bounded (small files read
 * whole up to CQ_SMALL_MAX bytes, mountinfo line by line, CQ_LINE_MAX a line,
 * at most CQ_LINES_MAX lines). Never logs, never fails: what cannot be read
 * is no limit.
 */
#include "cpuquota.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define CQ_SMALL_MAX 128        /* cpu.max, cfs files: "max 100000\n" and the like */
#define CQ_LINE_MAX 4096        /* a line of /proc/self/cgroup or mountinfo */
#define CQ_LINES_MAX 100000     /* a host with very many mounts: stop reading there */
#define CQ_DEFAULT_PERIOD 100000ULL
#define CQ_FIELDS 32            /* fields of a mountinfo line looked at */

struct cq_mount {
	int found;
	char root[PATH_MAX];    /* the directory of the hierarchy the mount shows */
	char point[PATH_MAX];   /* where it is mounted */
};

/* --- parsers ---------------------------------------------------------------- */

/* s[0..n) all digits (1..19 of them) -> *out; 0 or -1 */
static int
cq_number(const char *s, size_t n, unsigned long long *out)
{
	unsigned long long v = 0;

	if (n == 0 || n > 19)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* the length of text without one trailing "\n" */
static size_t
cq_chomp(const char *text, size_t len)
{
	return len > 0 && text[len - 1] == '\n' ? len - 1 : len;
}

int
cpuquota_parse_max(const char *text, size_t len, double *cpus)
{
	const char *sp;
	unsigned long long quota = 0, period = CQ_DEFAULT_PERIOD;
	size_t qlen;
	int unlimited;

	len = cq_chomp(text, len);
	if (len == 0 || memchr(text, '\0', len) != NULL)
		return -1;
	sp = memchr(text, ' ', len);
	qlen = sp != NULL ? (size_t)(sp - text) : len;
	unlimited = qlen == 3 && memcmp(text, "max", 3) == 0;
	if (!unlimited && (cq_number(text, qlen, &quota) != 0 || quota == 0))
		return -1;
	if (sp != NULL && cq_number(sp + 1, len - qlen - 1, &period) != 0)
		return -1;
	if (period == 0)
		return -1;
	*cpus = unlimited ? 0.0 : (double)quota / (double)period;
	return 0;
}

int
cpuquota_parse_cfs(const char *quota, size_t qlen, const char *period, size_t plen, double *cpus)
{
	unsigned long long q = 0, p = 0;
	int negative;

	qlen = cq_chomp(quota, qlen);
	plen = cq_chomp(period, plen);
	negative = qlen > 0 && quota[0] == '-';
	if (cq_number(quota + negative, qlen - (size_t)negative, &q) != 0 ||
	    cq_number(period, plen, &p) != 0 || p == 0)
		return -1;
	if (!negative && q == 0)
		return -1;
	*cpus = negative ? 0.0 : (double)q / (double)p;
	return 0;
}

int
cpuquota_count(double cpus, int usable)
{
	double c;

	if (usable < 1)
		usable = 1;
	if (!(cpus > 0.0))
		return usable;
	c = ceil(cpus - 1e-9);   /* 200000/100000 is 2, not 3 after a rounding error */
	if (c < 1.0)
		c = 1.0;
	return c < (double)usable ? (int)c : usable;
}

int
cpuquota_usable(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int n = online > 0 ? (online < INT_MAX ? (int)online : INT_MAX) : 1;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int a = CPU_COUNT(&set);

		if (a > 0 && a < n)
			n = a;
	}
	return n;
}

/* --- files ------------------------------------------------------------------- */

/* the whole of a small file, NUL-terminated: its length, or -1 (missing, empty, too long) */
static ssize_t
cq_read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1) {
		n = read(fd, buf + total, size - 1 - (size_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	n = (size_t)total == size - 1 ? read(fd, buf, 0) : 0;   /* full: the rest is unknown */
	close(fd);
	if (total <= 0 || (size_t)total == size - 1 || n < 0)
		return -1;
	buf[total] = '\0';
	return total;
}

/*
 * cq_next_line - the next line of f into line (without "\n"); an overlong
 * one is skipped whole. 1, or 0 at the end.
 */
static int
cq_next_line(FILE *f, char *line, size_t size)
{
	for (;;) {
		size_t n;

		if (fgets(line, (int)size, f) == NULL)
			return 0;
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\n') {
			line[n - 1] = '\0';
			return 1;
		}
		if (feof(f))
			return 1;   /* the last line, without "\n" */
		/* overlong: drop it to its end */
		while (fgets(line, (int)size, f) != NULL && strchr(line, '\n') == NULL)
			;
	}
}

/* 1 when the comma-separated list has item */
static int
cq_has_item(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ",");

		if (len == n && strncmp(p, item, n) == 0)
			return 1;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* from root's /proc/self/mountinfo: the first v1 hierarchy with cpu, and the first v2 one */
static void
cq_mounts(const char *root, struct cq_mount *v1, struct cq_mount *v2)
{
	char path[PATH_MAX + 32], line[CQ_LINE_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/proc/self/mountinfo", root);
	if ((f = fopen(path, "re")) == NULL)
		return;
	for (int lines = 0; lines < CQ_LINES_MAX && cq_next_line(f, line, sizeof(line)); lines++) {
		char *fld[CQ_FIELDS], *save = NULL, *tok;
		int n = 0, dash = -1;
		struct cq_mount *m = NULL;

		for (tok = strtok_r(line, " ", &save); tok != NULL && n < CQ_FIELDS;
		    tok = strtok_r(NULL, " ", &save)) {
			if (dash < 0 && n >= 6 && strcmp(tok, "-") == 0)
				dash = n;
			fld[n++] = tok;
		}
		/* id parent maj:min root point options [optional...] - fstype source superopts */
		if (dash < 0 || dash + 3 > n)
			continue;
		if (strcmp(fld[dash + 1], "cgroup2") == 0 && !v2->found)
			m = v2;
		else if (strcmp(fld[dash + 1], "cgroup") == 0 && !v1->found && cq_has_item(fld[dash + 3], "cpu"))
			m = v1;
		if (m == NULL)
			continue;
		util_strlcpy(m->root, fld[3], sizeof(m->root));
		util_strlcpy(m->point, fld[4], sizeof(m->point));
		m->found = 1;
	}
	fclose(f);
}

/* from root's /proc/self/cgroup: the process's cgroup in the v1 cpu and the v2 hierarchy ("" unknown) */
static void
cq_cgroups(const char *root, char *v1, char *v2, size_t len)
{
	char path[PATH_MAX + 32], line[CQ_LINE_MAX];
	FILE *f;

	v1[0] = v2[0] = '\0';
	snprintf(path, sizeof(path), "%s/proc/self/cgroup", root);
	if ((f = fopen(path, "re")) == NULL)
		return;
	for (int lines = 0; lines < CQ_LINES_MAX && cq_next_line(f, line, sizeof(line)); lines++) {
		char *c1 = strchr(line, ':'), *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;

		if (c2 == NULL || c2[1] != '/')
			continue;
		*c2 = '\0';
		if (strcmp(line, "0:") == 0 && c1 + 1 == c2)
			util_strlcpy(v2, c2 + 1, len);
		else if (cq_has_item(c1 + 1, "cpu"))
			util_strlcpy(v1, c2 + 1, len);
	}
	fclose(f);
}

/* one level's quota: 0 with *cpus (0 unlimited) and raw (the file text for the basis), or -1 */
static int
cq_level(const char *dir, int v2, double *cpus, char *raw, size_t rawlen)
{
	char path[PATH_MAX + 32], a[CQ_SMALL_MAX], b[CQ_SMALL_MAX];
	ssize_t na, nb;

	if (strlen(dir) > PATH_MAX)
		return -1;
	if (v2) {
		snprintf(path, sizeof(path), "%s/cpu.max", dir);
		if ((na = cq_read_small(path, a, sizeof(a))) < 0 || cpuquota_parse_max(a, (size_t)na, cpus) != 0)
			return -1;
		snprintf(raw, rawlen, "cpu.max \"%.*s\"", (int)cq_chomp(a, (size_t)na), a);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir);
	if ((na = cq_read_small(path, a, sizeof(a))) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir);
	if ((nb = cq_read_small(path, b, sizeof(b))) < 0 ||
	    cpuquota_parse_cfs(a, (size_t)na, b, (size_t)nb, cpus) != 0)
		return -1;
	snprintf(raw, rawlen, "cpu.cfs_quota_us %.*s / cpu.cfs_period_us %.*s",
	    (int)cq_chomp(a, (size_t)na), a, (int)cq_chomp(b, (size_t)nb), b);
	return 0;
}

/*
 * cq_walk - the smallest quota from the cgroup's directory up to the mount
 * point of m (under root); *best and basis updated when one is smaller.
 */
static void
cq_walk(const char *root, const struct cq_mount *m, const char *cgroup, int v2, double *best,
    char *basis, size_t basislen)
{
	char top[PATH_MAX + 8], dir[PATH_MAX * 2 + 16], raw[2 * CQ_SMALL_MAX + 64];
	const char *rel = "";
	size_t rl = strlen(m->root), toplen;

	if (!m->found || cgroup[0] == '\0')
		return;
	/* the cgroup's path relative to what the mount shows; outside it: the mount point alone */
	if (strcmp(m->root, "/") == 0)
		rel = cgroup;
	else if (strncmp(cgroup, m->root, rl) == 0 && (cgroup[rl] == '/' || cgroup[rl] == '\0'))
		rel = cgroup + rl;
	if (snprintf(top, sizeof(top), "%s%s", root, m->point) >= (int)sizeof(top))
		return;
	toplen = strlen(top);
	while (toplen > 1 && top[toplen - 1] == '/')
		top[--toplen] = '\0';
	if (snprintf(dir, sizeof(dir), "%s%s", top, strcmp(rel, "/") == 0 ? "" : rel) >= (int)sizeof(dir))
		return;
	for (;;) {
		double c;
		char *slash;

		if (cq_level(dir, v2, &c, raw, sizeof(raw)) == 0 && c > 0.0 && (*best == 0.0 || c < *best)) {
			*best = c;
			/* a long path is cut: the basis is for people */
			snprintf(basis, basislen, "cgroup %s %.120s in %.160s", v2 ? "v2" : "v1", raw,
			    dir + strlen(root));
		}
		if (strlen(dir) <= toplen || (slash = strrchr(dir, '/')) == NULL || (size_t)(slash - dir) < toplen)
			break;
		*slash = '\0';
	}
}

void
cpuquota_detect(const char *root, int usable, struct cpuquota *out)
{
	struct cq_mount v1, v2;
	char g1[PATH_MAX], g2[PATH_MAX], where[CPUQUOTA_BASIS_MAX];
	double best = 0.0;
	int n;

	memset(out, 0, sizeof(*out));
	memset(&v1, 0, sizeof(v1));
	memset(&v2, 0, sizeof(v2));
	where[0] = '\0';
	if (root == NULL)
		root = "";
	cq_mounts(root, &v1, &v2);
	cq_cgroups(root, g1, g2, sizeof(g1));
	cq_walk(root, &v2, g2, 1, &best, where, sizeof(where));
	cq_walk(root, &v1, g1, 0, &best, where, sizeof(where));
	out->cpus = best;
	out->usable = usable < 1 ? 1 : usable;
	out->count = n = cpuquota_count(best, out->usable);
	if (best == 0.0)
		snprintf(out->basis, sizeof(out->basis), "no cgroup CPU quota: the %d usable CPU%s", n,
		    n == 1 ? "" : "s");
	else if ((double)n >= best - 1e-9 && (double)n <= best + 1e-9)
		snprintf(out->basis, sizeof(out->basis), "%.290s: %d CPU%s", where, n, n == 1 ? "" : "s");
	else if ((double)n > best)
		snprintf(out->basis, sizeof(out->basis), "%.270s: %g CPUs, rounded up to %d", where, best, n);
	else
		snprintf(out->basis, sizeof(out->basis), "%.270s: %g CPUs, at most the %d usable", where, best, n);
}
