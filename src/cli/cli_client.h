/* cli_client: the client-side commands, `herald publish` (one event over the HTTP
 * API) and `herald tail` (subscribe over WebSocket, print events as JSON lines,
 * reconnect with backoff). SPEC section 7.
 *
 * Owns: its command's connection, arguments and output. Does not own: the server,
 * configuration files. Called from main() on the main thread; argv[0] is the
 * subcommand name ("publish", "tail"). Each returns the process exit status. */
#ifndef HERALD_CLI_CLIENT_H
#define HERALD_CLI_CLIENT_H

/* Exit: 0 on a 2xx answer (body on stdout), 1 otherwise (reason on stderr). */
int cli_publish(int argc, char **argv);

/* Exit: 0 after SIGINT/SIGTERM or --max-events, 1 on bad usage or when the server
 * refused the token (close 4001/4003), 2 when --timeout expired. */
int cli_tail(int argc, char **argv);

#endif
