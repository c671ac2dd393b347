/* tfm plot: placeholder until the subcommand lands. */
#include "commands.h"

int tfm_cmd_plot(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return tfm_cli_fail(2, "'plot' is not available in this build yet");
}
