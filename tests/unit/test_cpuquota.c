/*
 * test_cpuquota.c - the cgroup CPU quota: the cpu.max and cfs parsers
 * (table-driven), rounding, and cpuquota_detect on sample trees standing
 * for / (cgroup v2 in a container and on a host, a limit on an ancestor,
 * v1 with cpu,cpuacct and a mount root, a hybrid host, nothing readable).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/cpuquota.h"

Test(cpuquota, parse_max)
{
	static const struct { const char *in; int rc; double cpus; } t[] = {
		{ "max 100000\n", 0, 0.0 },
		{ "max", 0, 0.0 },
		{ "200000 100000\n", 0, 2.0 },
		{ "150000 100000", 0, 1.5 },
		{ "50000 100000\n", 0, 0.5 },
		{ "100000", 0, 1.0 },            /* period omitted: 100000 */
		{ "400000 200000\n", 0, 2.0 },
		{ "", -1, 0 }, { "\n", -1, 0 }, { "max  100000", -1, 0 }, { "0 100000", -1, 0 },
		{ "100000 0", -1, 0 }, { "-1 100000", -1, 0 }, { "1e5 100000", -1, 0 },
		{ "100000 100000 1", -1, 0 }, { "max 100000\n\n", -1, 0 }, { "MAX 100000", -1, 0 },
		{ "99999999999999999999 1", -1, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		double c = -1;
		int rc = cpuquota_parse_max(t[i].in, strlen(t[i].in), &c);

		cr_expect_eq(rc, t[i].rc, "parse_max(%s): got %d, want %d", t[i].in, rc, t[i].rc);
		if (rc == 0)
			cr_expect(c == t[i].cpus, "parse_max(%s): got %g CPUs, want %g", t[i].in, c, t[i].cpus);
	}
}

Test(cpuquota, parse_cfs)
{
	static const struct { const char *q, *p; int rc; double cpus; } t[] = {
		{ "-1\n", "100000\n", 0, 0.0 },
		{ "200000\n", "100000\n", 0, 2.0 },
		{ "50000", "100000", 0, 0.5 },
		{ "250000\n", "100000\n", 0, 2.5 },
		{ "0", "100000", -1, 0 }, { "100000", "0", -1, 0 }, { "", "100000", -1, 0 },
		{ "-", "100000", -1, 0 }, { "abc", "100000", -1, 0 }, { "1000", "-1", -1, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		double c = -1;
		int rc = cpuquota_parse_cfs(t[i].q, strlen(t[i].q), t[i].p, strlen(t[i].p), &c);

		cr_expect_eq(rc, t[i].rc, "parse_cfs(%s, %s): got %d, want %d", t[i].q, t[i].p, rc, t[i].rc);
		if (rc == 0)
			cr_expect(c == t[i].cpus, "parse_cfs(%s, %s): got %g, want %g", t[i].q, t[i].p, c, t[i].cpus);
	}
}

Test(cpuquota, count)
{
	static const struct { double cpus; int usable, want; } t[] = {
		{ 0.0, 8, 8 }, { 0.5, 8, 1 }, { 1.0, 8, 1 }, { 1.5, 8, 2 }, { 2.0, 8, 2 },
		{ 2.0000000001, 8, 2 }, { 2.01, 8, 3 }, { 16.0, 8, 8 }, { 0.01, 1, 1 }, { 0.0, 0, 1 },
		{ 3.0, -2, 1 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int n = cpuquota_count(t[i].cpus, t[i].usable);

		cr_expect_eq(n, t[i].want, "count(%g, %d): got %d, want %d", t[i].cpus, t[i].usable, n, t[i].want);
	}
	cr_expect(cpuquota_usable() >= 1);
}

/* --- sample trees ----------------------------------------------------------- */

static char root[PATH_MAX];

static void
put(const char *rel, const char *text)
{
	char path[PATH_MAX * 2], dir[PATH_MAX * 2];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
		memcpy(dir, path, (size_t)(p - path));
		dir[p - path] = '\0';
		cr_assert(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
	}
	f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s", path);
	fputs(text, f);
	fclose(f);
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void
fresh(void)
{
	snprintf(root, sizeof(root), "/tmp/txm-cpuquota-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
}

static void
done(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#define MI_V2 "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"

Test(cpuquota, v2_container, .init = fresh, .fini = done)
{
	struct cpuquota q;

	put("proc/self/mountinfo", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" MI_V2);
	put("proc/self/cgroup", "0::/\n");
	put("sys/fs/cgroup/cpu.max", "150000 100000\n");
	cpuquota_detect(root, 8, &q);
	cr_expect(q.cpus == 1.5, "got %g CPUs, want 1.5", q.cpus);
	cr_expect_eq(q.count, 2, "got count %d, want 2", q.count);
	cr_expect(strstr(q.basis, "cgroup v2 cpu.max \"150000 100000\" in /sys/fs/cgroup: 1.5 CPUs, rounded up to 2") != NULL,
	    "got basis %s", q.basis);
	put("sys/fs/cgroup/cpu.max", "max 100000\n");
	cpuquota_detect(root, 8, &q);
	cr_expect_eq(q.count, 8, "unlimited: got count %d, want the 8 usable", q.count);
	cr_expect_str_eq(q.basis, "no cgroup CPU quota: the 8 usable CPUs");
}

Test(cpuquota, v2_host_ancestor_is_smaller, .init = fresh, .fini = done)
{
	struct cpuquota q;

	put("proc/self/mountinfo", MI_V2);
	put("proc/self/cgroup", "0::/kubepods/burstable/pod1/ctr\n");
	put("sys/fs/cgroup/kubepods/burstable/pod1/ctr/cpu.max", "400000 100000\n");
	put("sys/fs/cgroup/kubepods/burstable/pod1/cpu.max", "200000 100000\n");
	put("sys/fs/cgroup/kubepods/burstable/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/kubepods/cpu.max", "garbage\n");
	cpuquota_detect(root, 16, &q);
	cr_expect(q.cpus == 2.0, "got %g CPUs, want the pod's 2", q.cpus);
	cr_expect_eq(q.count, 2);
	cr_expect(strstr(q.basis, "in /sys/fs/cgroup/kubepods/burstable/pod1: 2 CPUs") != NULL, "got %s", q.basis);
	cpuquota_detect(root, 1, &q);
	cr_expect_eq(q.count, 1, "one usable CPU: got %d, want 1", q.count);
	cr_expect(strstr(q.basis, "2 CPUs, at most the 1 usable") != NULL, "got %s", q.basis);
}

Test(cpuquota, v1_comounted_with_mount_root, .init = fresh, .fini = done)
{
	struct cpuquota q;

	/* docker without a cgroup namespace: the mount shows /docker/abc, the process is in /docker/abc */
	put("proc/self/mountinfo",
	    "1 0 8:1 / / rw - overlay overlay rw\n"
	    "30 29 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
	    "31 29 0:28 /docker/abc /sys/fs/cgroup/cpuset ro,nosuid - cgroup cgroup rw,cpuset\n");
	put("proc/self/cgroup", "12:cpuset:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n");
	put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n");
	put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
	cpuquota_detect(root, 4, &q);
	cr_expect(q.cpus == 0.5, "got %g, want 0.5", q.cpus);
	cr_expect_eq(q.count, 1);
	cr_expect(strstr(q.basis, "cgroup v1 cpu.cfs_quota_us 50000 / cpu.cfs_period_us 100000 in "
	    "/sys/fs/cgroup/cpu,cpuacct: 0.5 CPUs, rounded up to 1") != NULL, "got %s", q.basis);
}

Test(cpuquota, hybrid_host_v1_cpu_child, .init = fresh, .fini = done)
{
	struct cpuquota q;

	/* like this machine: v1 controllers, an empty v2 "unified" tree */
	put("proc/self/mountinfo",
	    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
	    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
	put("proc/self/cgroup", "2:cpuacct:/\n1:cpu:/txm/child\n0::/\n");
	put("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu/txm/cpu.cfs_quota_us", "100000\n");
	put("sys/fs/cgroup/cpu/txm/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu/txm/child/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu/txm/child/cpu.cfs_period_us", "100000\n");
	cpuquota_detect(root, 2, &q);
	cr_expect(q.cpus == 1.0, "got %g, want the parent's 1", q.cpus);
	cr_expect_eq(q.count, 1);
	cr_expect(strstr(q.basis, "in /sys/fs/cgroup/cpu/txm: 1 CPU") != NULL, "got %s", q.basis);
}

Test(cpuquota, nothing_readable, .init = fresh, .fini = done)
{
	struct cpuquota q;
	char line[6000];

	cpuquota_detect(root, 3, &q);
	cr_expect_eq(q.count, 3);
	cr_expect(q.cpus == 0.0);
	/* an overlong line is skipped, the next one still read */
	memset(line, 'x', sizeof(line) - 2);
	line[sizeof(line) - 2] = '\n';
	line[sizeof(line) - 1] = '\0';
	put("proc/self/mountinfo", line);
	{
		char path[PATH_MAX * 2];
		FILE *f;

		snprintf(path, sizeof(path), "%s/proc/self/mountinfo", root);
		f = fopen(path, "a");
		cr_assert_not_null(f);
		fputs(MI_V2, f);
		fclose(f);
	}
	put("proc/self/cgroup", "0::/a\n");
	put("sys/fs/cgroup/a/cpu.max", "300000 100000");
	cpuquota_detect(root, 8, &q);
	cr_expect_eq(q.count, 3, "after an overlong mountinfo line: got %d, want 3", q.count);
	/* a cpu.max too long to be one is no limit */
	put("sys/fs/cgroup/a/cpu.max", "300000 100000                                                  "
	    "                                                                                     ");
	cpuquota_detect(root, 8, &q);
	cr_expect_eq(q.count, 8, "overlong cpu.max: got %d, want 8", q.count);
}
