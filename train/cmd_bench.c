/* tfm bench: placeholder until the subcommand lands. */
#include "commands.h"

int tfm_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return tfm_cli_fail(2, "'bench' is not available in this build yet");
}
