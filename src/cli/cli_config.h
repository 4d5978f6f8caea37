/* cli_config: the `herald config check FILE` command.
 *
 * Owns nothing past the call: it loads the built-in defaults, applies FILE and runs
 * the whole-config checks, then reports. Does not start anything, open sockets or
 * touch the data dir. Called from the main thread of the herald process. */
#ifndef HERALD_CLI_CONFIG_H
#define HERALD_CLI_CONFIG_H

/* argv holds the words after `herald config`: argv[0] is "check", then options and
 * FILE. Options: --json (problems as a JSON array on stdout), --env (also apply the
 * HERALD_* environment, as `serve` would).
 * Prints each problem as one line "$.path: message" on stderr and returns 1, or
 * prints "ok: FILE" on stdout and returns 0. A usage error prints the usage on
 * stderr and returns 2. */
int cli_config_check(int argc, char **argv);

#endif
