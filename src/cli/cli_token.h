/* cli_token: `herald token create|list|revoke` (SPEC 7, 9.5). argv[0] is "token". */
#ifndef HERALD_CLI_TOKEN_H
#define HERALD_CLI_TOKEN_H

int cli_token(int argc, char **argv);

#endif
