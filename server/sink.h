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

/* sink_main - `txmail sink [--listen host:port] [--dir DIR]`, runs until SIGINT/SIGTERM. */
int sink_main(int argc, char **argv);

#endif
