/*
 * embed.h - the embedded redis-server child of `txmail run` when
 * TXMAIL_REDIS_URL is unset: data, AOF and a unix socket under
 * <data_dir>/redis. The child dies with us (PR_SET_PDEATHSIG) and is
 * stopped by embed_redis_stop (SHUTDOWN via SIGTERM, then waited for).
 */
#ifndef SERVER_EMBED_H
#define SERVER_EMBED_H

#include <sys/types.h>

#include "config.h"

struct embed_redis {
	pid_t pid;
	char socket_path[PATH_MAX];
};

/* embed_redis_start - spawn and wait (up to 10 s) until it answers; fills *addr. 0 or -1 with err. */
int embed_redis_start(struct embed_redis *r, const char *data_dir, const char *server_bin,
    struct redis_addr *addr, char *err, size_t errlen);
void embed_redis_stop(struct embed_redis *r);

#endif
