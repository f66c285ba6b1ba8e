/*
 * dkim_cli.c - `txmail dkim keygen`: make a DKIM key and say what to
 * publish in DNS.
 *
 * Owns the command line of `txmail dkim`. Writes the private key only to a
 * new file created with mode 0600 (never over an existing file, never to
 * the terminal); prints the TXT record name and value on stdout. Needs no
 * configuration, Redis or network.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "dkim_cli.h"
#include "../smtp/dkim.h"

#define DKIM_CLI_TXT_CHUNK 255   /* a DNS character-string holds at most 255 octets */

static const char dkim_usage[] =
    "usage: txmail dkim keygen --domain DOMAIN --selector SELECTOR\n"
    "                          [--type rsa|ed25519] [--out FILE]\n"
    "\n"
    "Creates a DKIM private key (RSA 2048, the default, or Ed25519) in FILE\n"
    "(default DOMAIN.SELECTOR.pem; mode 0600; an existing file is never\n"
    "overwritten) and prints the DNS TXT record to publish:\n"
    "\n"
    "  name:  SELECTOR._domainkey.DOMAIN\n"
    "  value: v=DKIM1; k=rsa; p=...\n"
    "  zone:  the same as a zone file line, split into 255-octet strings\n"
    "\n"
    "Then sign mail from DOMAIN with TXMAIL_DKIM_KEYS=DOMAIN:SELECTOR:FILE.\n"
    "Ed25519 (RFC 8463) is not yet verified by every receiver: publish an\n"
    "RSA key too (a second selector) when you use one.\n"
    "Exit status: 0 done, 1 failed, 2 usage.\n";

static int
dkim_cli_usage(int rc)
{
	fputs(dkim_usage, rc == 0 ? stdout : stderr);
	return rc;
}

/* write_new - create path (must not exist) with mode 0600 and write (p, n). 0 or -1 with errno. */
static int
write_new(const char *path, const char *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t off = 0;
	ssize_t w;
	int saved;

	if (fd < 0)
		return -1;
	while (off < n) {
		w = write(fd, p + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		off += (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(path);
	errno = saved;
	return -1;
}

static int
keygen(int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *type = "rsa", *out = NULL;
	char path[4096], err[256], *pem = NULL, *txt = NULL;
	struct dkim_signer *check = NULL;
	int t, rc = 1;

	for (int i = 1; i < argc; i++) {
		const char **dst = NULL;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return dkim_cli_usage(0);
		if (strcmp(argv[i], "--domain") == 0)
			dst = &domain;
		else if (strcmp(argv[i], "--selector") == 0)
			dst = &selector;
		else if (strcmp(argv[i], "--type") == 0)
			dst = &type;
		else if (strcmp(argv[i], "--out") == 0)
			dst = &out;
		if (dst == NULL || i + 1 >= argc) {
			fprintf(stderr, "txmail dkim keygen: %s %s\n\n", dst == NULL ?
			    "unknown option" : "missing value for", argv[i]);
			return dkim_cli_usage(2);
		}
		*dst = argv[++i];
	}
	if (domain == NULL || selector == NULL) {
		fprintf(stderr, "txmail dkim keygen: --domain and --selector are required\n\n");
		return dkim_cli_usage(2);
	}
	if (strcmp(type, "rsa") == 0) {
		t = DKIM_KEY_RSA;
	} else if (strcmp(type, "ed25519") == 0) {
		t = DKIM_KEY_ED25519;
	} else {
		fprintf(stderr, "txmail dkim keygen: --type: want rsa or ed25519\n\n");
		return dkim_cli_usage(2);
	}
	if (out == NULL) {
		int n = snprintf(path, sizeof(path), "%s.%s.pem", domain, selector);
		if (n < 0 || (size_t)n >= sizeof(path)) {
			fprintf(stderr, "txmail dkim keygen: name too long\n");
			return 2;
		}
		out = path;
	}
	if (dkim_keygen(t, &pem, &txt) != 0) {
		fprintf(stderr, "txmail dkim keygen: key generation failed\n");
		goto out;
	}
	/* the same check `run` makes when it loads the key: fail here, not at start */
	check = dkim_signer_new(domain, selector, pem, strlen(pem), err, sizeof(err));
	if (check == NULL) {
		fprintf(stderr, "txmail dkim keygen: %s\n", err);
		rc = 2;
		goto out;
	}
	if (write_new(out, pem, strlen(pem)) != 0) {
		fprintf(stderr, "txmail dkim keygen: cannot create %s: %s\n", out, strerror(errno));
		goto out;
	}
	printf("key:   %s\n", out);
	printf("name:  %s._domainkey.%s\n", selector, dkim_signer_domain(check));
	printf("value: %s\n", txt);
	printf("zone:  %s._domainkey.%s. IN TXT (", selector, dkim_signer_domain(check));
	for (size_t off = 0, n = strlen(txt); off < n; off += DKIM_CLI_TXT_CHUNK)
		printf(" \"%.*s\"", (int)(n - off < DKIM_CLI_TXT_CHUNK ? n - off : DKIM_CLI_TXT_CHUNK),
		    txt + off);
	printf(" )\n");
	printf("env:   TXMAIL_DKIM_KEYS=%s:%s:%s\n", dkim_signer_domain(check), selector, out);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	if (pem != NULL) {
		OPENSSL_cleanse(pem, strlen(pem));
		free(pem);
	}
	free(txt);
	dkim_signer_free(check);
	return rc;
}

int
dkim_main(int argc, char **argv)
{
	if (argc < 2)
		return dkim_cli_usage(2);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0)
		return dkim_cli_usage(0);
	if (strcmp(argv[1], "keygen") == 0)
		return keygen(argc - 1, argv + 1);
	fprintf(stderr, "txmail dkim: unknown command '%s'\n\n", argv[1]);
	return dkim_cli_usage(2);
}
