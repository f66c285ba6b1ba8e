/*
 * tls.c - OpenSSL glue for SMTP sessions.
 *
 * Owns the SSL_CTX and SSL objects, certificate and host name verification
 * (never hand-rolled: SSL_VERIFY_PEER + SSL_set1_host / IP param + SNI), and
 * the mapping of OpenSSL's non-blocking results to SMTP_TLS_*. It never owns
 * or closes the socket, never blocks and never logs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

struct smtp_tls_ctx {
	SSL_CTX *ctx;
};

struct smtp_tls {
	SSL *ssl;
	int verify;
};

static void tls_errtext(const char *what, char *err, size_t errlen)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, errlen, "%s: %s", what, buf);
	} else {
		snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

struct smtp_tls_ctx *smtp_tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	struct smtp_tls_ctx *c = NULL;
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		tls_errtext("SSL_CTX_new", err, errlen);
		goto out;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error();   /* no system store is not fatal with ca_file */
	if (ca_file != NULL && ca_file[0] != '\0' &&
	    SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		char what[300];
		snprintf(what, sizeof(what), "loading CA file %.200s", ca_file);
		tls_errtext(what, err, errlen);
		SSL_CTX_free(ctx);
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		SSL_CTX_free(ctx);
		goto out;
	}
	c->ctx = ctx;
out:
	return c;
}

void smtp_tls_ctx_free(struct smtp_tls_ctx *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->ctx);
	free(c);
}

static int is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

struct smtp_tls *smtp_tls_new(struct smtp_tls_ctx *c, int fd, const char *host,
    int no_verify, char *err, size_t errlen)
{
	struct smtp_tls *t = NULL;
	SSL *ssl = NULL;

	ERR_clear_error();
	ssl = SSL_new(c->ctx);
	if (ssl == NULL) {
		tls_errtext("SSL_new", err, errlen);
		goto fail;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		tls_errtext("SSL_set_fd", err, errlen);
		goto fail;
	}
	if (is_ip_literal(host)) {
		if (!no_verify &&
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
			tls_errtext("setting IP to verify", err, errlen);
			goto fail;
		}
	} else {
		if (SSL_set_tlsext_host_name(ssl, host) != 1) {
			tls_errtext("setting SNI", err, errlen);
			goto fail;
		}
		if (!no_verify && SSL_set1_host(ssl, host) != 1) {
			tls_errtext("setting host to verify", err, errlen);
			goto fail;
		}
	}
	SSL_set_verify(ssl, no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	SSL_set_connect_state(ssl);
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	t->ssl = ssl;
	t->verify = !no_verify;
	return t;
fail:
	SSL_free(ssl);
	return NULL;
}

/* map an SSL_* result; ret is the return value of the SSL call */
static int tls_result(struct smtp_tls *t, int ret, const char *what, char *err, size_t errlen)
{
	int e = SSL_get_error(t->ssl, ret);
	long vr;

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return SMTP_TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return SMTP_TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		snprintf(err, errlen, "connection closed by server (TLS close)");
		return SMTP_TLS_CLOSED;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			if (errno == 0 || ret == 0) {
				snprintf(err, errlen, "connection closed by server during %s", what);
				ERR_clear_error();
				return SMTP_TLS_CLOSED;
			}
			snprintf(err, errlen, "%s: %s", what, strerror(errno));
			return SMTP_TLS_ERR;
		}
		break;
	default:
		break;
	}
	vr = SSL_get_verify_result(t->ssl);
	if (t->verify && vr != X509_V_OK) {
		snprintf(err, errlen, "certificate verification failed: %s",
		    X509_verify_cert_error_string(vr));
		ERR_clear_error();
		return SMTP_TLS_ERR;
	}
	tls_errtext(what, err, errlen);
	return SMTP_TLS_ERR;
}

int smtp_tls_handshake(struct smtp_tls *t, char *err, size_t errlen)
{
	int ret;

	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(t->ssl);
	if (ret == 1)
		return 0;
	ret = tls_result(t, ret, "TLS handshake", err, errlen);
	return ret == SMTP_TLS_CLOSED ? SMTP_TLS_ERR : ret;
}

ssize_t smtp_tls_read(struct smtp_tls *t, void *buf, size_t len, char *err, size_t errlen)
{
	size_t n = 0;
	int ret;

	ERR_clear_error();
	errno = 0;
	ret = SSL_read_ex(t->ssl, buf, len, &n);
	if (ret == 1)
		return (ssize_t)n;
	return tls_result(t, ret, "TLS read", err, errlen);
}

ssize_t smtp_tls_write(struct smtp_tls *t, const void *buf, size_t len, char *err, size_t errlen)
{
	size_t n = 0;
	int ret;

	ERR_clear_error();
	errno = 0;
	ret = SSL_write_ex(t->ssl, buf, len, &n);
	if (ret == 1)
		return (ssize_t)n;
	return tls_result(t, ret, "TLS write", err, errlen);
}

void smtp_tls_describe(const struct smtp_tls *t, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s %s", SSL_get_version(t->ssl),
	    SSL_get_cipher_name(t->ssl));
}

void smtp_tls_free(struct smtp_tls *t)
{
	if (t == NULL)
		return;
	if (SSL_is_init_finished(t->ssl))
		(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
	SSL_free(t->ssl);
	free(t);
}
