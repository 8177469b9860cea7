#!/bin/sh
# The Nansha demo: what `make demo` runs, in the repository's folder. tests/test_fresh_clone.py
# runs this same file in a fresh clone, so the README's two commands are checked as a
# newcomer meets them.
#
# NSDX is the nsdx command to use (default: the virtualenv's, as `make demo` installs it).
# NSDX_DEMO_ROWS, when set, is the number of bus GPS rows to generate (default 1,000,000).
# A dataset that cannot be published (a missing or moved file) is reported with its file and
# what to do; the others are published and the rest of the demo still runs; the exit status
# then says that something failed.
set -u
NSDX=${NSDX:-.venv/bin/nsdx}
QUERY="SELECT route_id, count(*) AS positions, round(avg(speed_kmh), 1) AS avg_speed_kmh FROM transport.nansha_bus_gps GROUP BY route_id ORDER BY positions DESC LIMIT 5"

$NSDX samples generate --out data/samples ${NSDX_DEMO_ROWS:+--rows "$NSDX_DEMO_ROWS"} || exit 1
ingest=0
$NSDX ingest --all || ingest=$?
$NSDX datasets list || exit 1
$NSDX query "$QUERY" || exit 1
# the application scenarios over the sample data; each one's query and held-out split run
$NSDX scenario load scenarios.yaml || exit 1
$NSDX scenario check || exit 1
# registers every product it sells (no scenario, no registration; no registration, no trade)
$NSDX exchange demo || exit 1
$NSDX registration list || exit 1
$NSDX audit verify || exit 1
$NSDX audit flags || exit 1
# the cross-border rules: a Hong Kong buyer through the GBA route, an overseas buyer refused
$NSDX audit cross-border --year $(($(date +%Y) - 1)) || exit 1
if [ "$ingest" -ne 0 ]; then
    echo "" >&2
    echo "Some datasets were not published (see ✗ above); the others were, and the demo ran." >&2
    echo "A file missing under data/real/ belongs to the repository: 'git checkout -- data/real'" >&2
    echo "restores it. Files under data/samples/ are written by 'nsdx samples generate'." >&2
    exit "$ingest"
fi
