/*
 * sink.h - the capture SMTP server (txmail sink; part of `run --dev`).
 *
 * Accepts any mail on a loopback port and writes each message, as
 * received, to <dir>/<time>-<seq>.eml (written to a temporary name, then
 * renamed, so a reader never sees half a file). A Received-like
 * X-Txmail-Envelope header line is NOT added: files are byte-identical to
 * the DATA. One thread, poll(2), many connections.
 */
#ifndef SERVER_SINK_H
#define SERVER_SINK_H

#include <stddef.h>
#include <stdint.h>

struct sink;

/* sink_start - listen on host:port (port 0 = any; *bound_port gets it). NULL with err. */
struct sink *sink_start(const char *host, uint16_t port, const char *dir,
    uint16_t *bound_port, char *err, size_t errlen);
void sink_stop(struct sink *s);

/*
 * Hooks turn the capture server into another inbound SMTP service (the
 * bounce listener): the same state machine, caps and poll loop, with the
 * decisions made by the caller. Both run on the sink thread and must not
 * block for long (they hold up every other client of this sink).
 */
struct sink_hooks {
	const char *name;   /* in the banner: "220 <host> <name> ESMTP"; NULL: "txmail sink" */
	/*
	 * rcpt - called for each RCPT TO with the bare address (no angle
	 * brackets, may be ""). 0 accepts; otherwise write a full reply line
	 * ("550 5.1.1 ...") into reply and return -1. NULL: accept all.
	 */
	int (*rcpt)(const char *addr, char *reply, size_t replylen, void *arg);
	/*
	 * message - called at the end of DATA instead of writing a file, with
	 * the envelope (mail_from "" for the null sender) and the message as
	 * received (dot-unstuffed). 0: "250 2.0.0 Ok"; otherwise write a full
	 * reply line into reply and return -1. Required.
	 */
	int (*message)(const char *mail_from, const char *const *rcpts, size_t nrcpts,
	    const char *msg, size_t len, char *reply, size_t replylen, void *arg);
	void *arg;
};

/* sink_start_hooks - like sink_start, but each message goes to hooks (copied). NULL with err. */
struct sink *sink_start_hooks(const char *host, uint16_t port, const struct sink_hooks *hooks,
    uint16_t *bound_port, char *err, size_t errlen);

/* sink_main - `txmail sink [--listen host:port] [--dir DIR]`, runs until SIGINT/SIGTERM. */
int sink_main(int argc, char **argv);

#endif
