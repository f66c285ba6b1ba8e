/*
 * vg_no_ca_bundle.c - LD_PRELOAD'ed into the unit test binaries when they
 * run under valgrind (make valgrind-smoke, make valgrind); never linked into
 * a test or into txmail.
 *
 * Criterion starts every test in a fresh exec of the test binary, and each
 * of them calls git_libgit2_init(), whose mbedTLS stream parses the whole
 * system CA bundle (/etc/ssl/certs/ca-certificates.crt): 82% of the
 * instructions of a Criterion process that runs no test, ~0.3 CPU-s per test
 * under memcheck. Criterion never opens a TLS connection, so an empty CA
 * chain changes nothing it does; txmail's own TLS is OpenSSL's and does not
 * go through this function.
 */
int mbedtls_x509_crt_parse_file(void *chain, const char *path);

int
mbedtls_x509_crt_parse_file(void *chain, const char *path)
{
	(void)chain;
	(void)path;
	return 0;
}
