/*
 * tls.h - TLS for SMTP sessions (the only OpenSSL TLS user in txmail).
 *
 * A context per engine (system CA store + optional extra CA file) and a
 * non-blocking TLS connection per session over an already connected socket.
 * Verification is on unless no_verify: SSL_VERIFY_PEER, SNI for host names,
 * SSL_set1_host / IP check for the name. Nothing here blocks or logs.
 */
#ifndef SMTP_TLS_H
#define SMTP_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct smtp_tls_ctx;
struct smtp_tls;

enum {
	SMTP_TLS_WANT_READ = -1,   /* retry when the socket is readable */
	SMTP_TLS_WANT_WRITE = -2,  /* retry when the socket is writable */
	SMTP_TLS_ERR = -3,         /* failed; text in err */
	SMTP_TLS_CLOSED = -4,      /* peer closed the connection */
};

/* smtp_tls_ctx_new - client context; ca_file "" or NULL = system store only. NULL + err on failure. */
struct smtp_tls_ctx *smtp_tls_ctx_new(const char *ca_file, char *err, size_t errlen);
void smtp_tls_ctx_free(struct smtp_tls_ctx *c);

/*
 * smtp_tls_new - a client TLS connection on connected socket fd (not owned)
 * for host (name or IP literal). NULL + err on failure.
 */
struct smtp_tls *smtp_tls_new(struct smtp_tls_ctx *c, int fd, const char *host,
    int no_verify, char *err, size_t errlen);

/* smtp_tls_handshake - 0 when done, SMTP_TLS_WANT_*, or SMTP_TLS_ERR with err (verify errors named). */
int smtp_tls_handshake(struct smtp_tls *t, char *err, size_t errlen);

/* smtp_tls_read - bytes read (> 0), or SMTP_TLS_WANT_* / SMTP_TLS_CLOSED / SMTP_TLS_ERR. */
ssize_t smtp_tls_read(struct smtp_tls *t, void *buf, size_t len, char *err, size_t errlen);

/* smtp_tls_write - bytes written (> 0), or SMTP_TLS_WANT_* / SMTP_TLS_CLOSED / SMTP_TLS_ERR. */
ssize_t smtp_tls_write(struct smtp_tls *t, const void *buf, size_t len, char *err, size_t errlen);

/* smtp_tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384" into out. */
void smtp_tls_describe(const struct smtp_tls *t, char *out, size_t outlen);

/* smtp_tls_free - send close_notify once (no waiting) and free; fd stays open. NULL ok. */
void smtp_tls_free(struct smtp_tls *t);

#endif
