/* tfm export: placeholder until the subcommand lands. */
#include "commands.h"

int tfm_cmd_export(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return tfm_cli_fail(2, "'export' is not available in this build yet");
}
