/*
 * dkim_cli.h - the `txmail dkim` command (key generation).
 */
#ifndef SERVER_DKIM_CLI_H
#define SERVER_DKIM_CLI_H

/* dkim_main - `txmail dkim ...` (argv[0] = "dkim"). Returns the exit status: 0, 1 (failed), 2 (usage). */
int dkim_main(int argc, char **argv);

#endif
