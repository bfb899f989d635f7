#!/usr/bin/env bash
# Regenerates the failure-handling lab report: runs every sweep with the
# release binary (simulated time), writes results/<sweep>.{csv,json,svg,md}
# and assembles README.md from README.in.md.
#
#   integration/lab/regenerate.sh            # 8 seeds per point (a few minutes on 2 cores)
#   SEEDS=3 integration/lab/regenerate.sh    # quicker, wider intervals
#   REAL=0 integration/lab/regenerate.sh     # keep the last real-time comparison (section 9)
#   SWEEPS=0 integration/lab/regenerate.sh   # keep the simulated sweeps (sections 1-8)
#   REAL_SEEDS=5 integration/lab/regenerate.sh  # real-time runs per point (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=integration/lab
OUT=$LAB/results
SEEDS=${SEEDS:-8}
if [[ -z "${POOLGATE_BIN:-}" ]]; then
    cargo build --release -p poolgate >&2
    POOLGATE_BIN="${CARGO_TARGET_DIR:-target}/release/poolgate"
fi
mkdir -p "$OUT"
start=$(date +%s)
# SWEEPS=0: keep the simulated sweeps' results (sections 1-8).
if [[ ${SWEEPS:-1} != 0 ]]; then

sweep() {
    local name=$1
    shift
    "$POOLGATE_BIN" lab sweep --seeds "$SEEDS" --out "$OUT/$name" --markdown "$OUT/$name.md" "$@"
}

# 1. PE MTBF (in request handling times) with clean shutdowns, all policies.
sweep mtbf-clean --title "PE MTBF, clean shutdowns" \
    --param mtbf --values 1,2,5,10,20,50,100,inf --silent 0
# 2. The same with silent failures only (detected by session keep-alives).
sweep mtbf-silent --title "PE MTBF, silent failures" \
    --param mtbf --values 1,2,5,10,20,50,100,inf --silent 1
# 3. Share of silent failures against the session keep-alive interval (MTBF 10).
sweep silent-vs-session-ka --title "Session keep-alive interval, lines by share of silent failures (MTBF 10)" \
    --param session-ka-interval --values 0.1,0.25,0.5,1,2,5 --by silent --by-values 0,0.5,1 \
    --mtbf 10 --policies lu
# 4. Session against endpoint keep-alive interval at target utilisation 40 %.
sweep session-vs-endpoint-ka --title "Session keep-alive interval, lines by endpoint keep-alive interval (40 %, silent, MTBF 10)" \
    --param session-ka-interval --values 0.25,0.5,1,2,5 --by endpoint-ka-interval --by-values 0.25,1,5 \
    --utilisation 40% --mtbf 10 --silent 1 --policies lu,rr
# 5. Endpoint keep-alive interval against MAX-BAD-PE-REPORT (size:capacity 1, 25 %).
sweep endpoint-ka-vs-reports --title "Endpoint keep-alive interval, lines by MAX-BAD-PE-REPORT (size:capacity 1, 25 %, silent, MTBF 50)" \
    --param endpoint-ka-interval --values 0.5,1,2,5,10,20 --by max-bad-pe-report --by-values 1,3,inf \
    --size-ratio 1 --utilisation 25% --mtbf 50 --silent 1 --policies lu
# 6. Abort and Restart against request size:capacity at several MTBFs (seconds).
sweep abort-restart --title "Abort and Restart: request size:capacity, lines by PE MTBF in seconds" \
    --param size-ratio --values 1,2,5,10,20,50 --by mtbf-s --by-values 100,1000,10000 \
    --abort-restart true --silent 0.5 --policies lu
# 6b. The same sizes with cookies (resume) versus Abort and Restart at MTBF 1000 s.
sweep abort-vs-resume --title "Request size:capacity, Abort and Restart vs resume from cookie (MTBF 1000 s)" \
    --param size-ratio --values 1,2,5,10,20,50 --by abort-restart --by-values true,false \
    --mtbf-s 1000 --silent 0.5 --policies lu
# 7. Cookie interval (share of the request size) against MTBF, silent failures.
sweep cookie-vs-mtbf --title "Cookie interval (% of request size), lines by PE MTBF (silent failures)" \
    --param cookie-interval --values 1%,5%,10%,25%,50%,100%,400% --by mtbf --by-values 5,20,100 \
    --silent 1 --policies lu
# 8. Reject and Retry against no rejection at high load.
sweep reject-retry --title "Reject and Retry: max requests per PE (0 = off) at 80 %" \
    --param max-jobs --values 0,2,4,8 --utilisation 80% --mtbf 20 --silent 0.5

"$POOLGATE_BIN" lab cookie-interval --mtbf 1000 --capacity 1e6 --goodput 0.99 >"$OUT/cookie-interval.txt"
"$POOLGATE_BIN" lab cookie-interval --mtbf 100 --capacity 1e6 --goodput 0.99 >>"$OUT/cookie-interval.txt"
elapsed=$(($(date +%s) - start))
echo "$elapsed" >"$OUT/elapsed.txt"
fi
elapsed=$(cat "$OUT/elapsed.txt" 2>/dev/null || echo "?")

# 9. Real time against simulated time: real processes over SCTP on loopback, so this
# takes minutes of wall time (about 33 s per real run) and wants a quiet machine.
if [[ ${REAL:-1} != 0 || ! -f $OUT/agreement.md ]]; then
    "$POOLGATE_BIN" lab agree --time-scale 0.1 --real-seeds "${REAL_SEEDS:-3}" --sim-seeds 20 \
        --pes 10 --pu-pe-ratio 10 --size-ratio 1 --duration 300 --warmup 30 --failure-mtbf 100 \
        --markdown "$OUT/agreement.md" --json "$OUT/agreement.json"
fi


# README.md: README.in.md with {{table:NAME}}, {{file:NAME}} and {{meta}} filled in.
{
    while IFS= read -r line; do
        if [[ $line =~ ^\{\{table:([a-z0-9-]+)\}\}$ ]]; then
            cat "$OUT/${BASH_REMATCH[1]}.md"
        elif [[ $line =~ ^\{\{file:([a-z0-9.-]+)\}\}$ ]]; then
            echo '```'
            cat "$OUT/${BASH_REMATCH[1]}"
            echo '```'
        elif [[ $line == '{{meta}}' ]]; then
            echo "Generated by \`integration/lab/regenerate.sh\` on $(date -u +%Y-%m-%d) from commit" \
                "$(git rev-parse --short HEAD 2>/dev/null || echo unknown): $SEEDS seeds per point," \
                "the simulated sweeps took ${elapsed} s of wall time on $(nproc) cores."
        else
            printf '%s\n' "$line"
        fi
    done <"$LAB/README.in.md"
} >"$LAB/README.md"
echo "wrote $LAB/README.md (${elapsed}s)" >&2
