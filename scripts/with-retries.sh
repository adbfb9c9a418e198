# Sourced by scripts/install-deps and scripts/autobahn: `with_retries COMMAND...` runs a download (or an install
# that downloads), which a package index's or mirror's passing hiccup can fail, up to three times, 10 and 20 s
# apart, so that a fresh machine's first `make test` does not fail on it. Messages name the calling script.
with_retries() {
    local attempt caller
    caller=$(basename "$0")
    for attempt in 1 2 3; do
        "$@" && return 0
        [ "$attempt" -lt 3 ] || break
        echo "$caller: '$*' failed (attempt $attempt of 3); trying again in $((attempt * 10)) s" >&2
        sleep $((attempt * 10))
    done
    echo "$caller: '$*' failed 3 times" >&2
    return 1
}
