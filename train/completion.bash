# bash completion for tfm. Subcommands and flags come from the installed
# program's own --help (the tables it parses with), so they cannot go stale.
_tfm() {
    local cur=${COMP_WORDS[COMP_CWORD]} prog=${COMP_WORDS[0]} words
    COMPREPLY=()
    if [ "$COMP_CWORD" -eq 1 ]; then
        words=$("$prog" --help 2>/dev/null | awk '/^  [a-z]/ {print $1}')
        COMPREPLY=($(compgen -W "$words --help --version" -- "$cur"))
        return
    fi
    local cmd=${COMP_WORDS[1]} help
    case "$cmd" in
    bpe | bench | data)
        # their first argument is an action named in the usage lines
        if [ "$COMP_CWORD" -eq 2 ]; then
            words=$("$prog" "$cmd" --help 2>/dev/null |
                sed -n 's/^\(usage:\)\{0,1\} *tfm [a-z]* \([a-z]*\).*/\2/p' | sort -u)
            COMPREPLY=($(compgen -W "$words" -- "$cur"))
            return
        fi
        ;;
    esac
    if [[ $cur == -* ]]; then
        if [ "$cmd" = bench ] && [ "$COMP_CWORD" -gt 2 ]; then
            help=$("$prog" bench "${COMP_WORDS[2]}" --help 2>/dev/null)
        else
            help=$("$prog" "$cmd" --help 2>/dev/null)
        fi
        words=$(grep -o -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u)
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -F _tfm tfm
