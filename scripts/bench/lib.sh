# Helpers shared by the benchmark scripts (sourced, not run).

# alive PID: running, not a zombie waiting to be reaped.
alive() {
    local state
    state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# free_port: a loopback port above the ephemeral range (32768-60999 by
# default), chosen at random and checked against every socket using it.
free_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((61000 + RANDOM % 4500))
        if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}
