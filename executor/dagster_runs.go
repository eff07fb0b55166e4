package executor

import (
	"fmt"
	"math"
	"strings"

	"github.com/deployhook/deployhook/internal/shell"
)

// DefaultDagsterGraphQL is where the Dagster webserver answers GraphQL on
// its VM by default (dagster-webserver's default port, 3000).
const DefaultDagsterGraphQL = "http://127.0.0.1:3000/graphql"

// FailedRuns is Dagster's own signal for the watch: the share of runs that
// failed since the deploy, compared with a window of the same length before
// it, read from the Dagster webserver's GraphQL API on the target (runsOrError
// with updatedAfter and updatedBefore: Dagster 1.7.7 or later). A check is
// degraded when, since the deploy, at least MinRuns runs were updated, at
// least MaxShare of them failed, and that share is higher than before the
// deploy: a job that always fails does not roll a deploy back.
type FailedRuns struct {
	URL      string  // the GraphQL endpoint on the target; empty: DefaultDagsterGraphQL
	MaxShare float64 // in (0, 1]
	MinRuns  int     // >= 1
}

// runsQuery counts the failed and all runs updated since the deploy ($since)
// and in the window of the same length before it ($start to $since). It has
// neither double quotes nor backslashes, so it is a JSON string as it is.
const runsQuery = `query DeployhookWatch($since: Float!, $start: Float!) {` +
	` fa: runsOrError(filter: {updatedAfter: $since, statuses: [FAILURE]}) { ...n }` +
	` ta: runsOrError(filter: {updatedAfter: $since}) { ...n }` +
	` fb: runsOrError(filter: {updatedAfter: $start, updatedBefore: $since, statuses: [FAILURE]}) { ...n }` +
	` tb: runsOrError(filter: {updatedAfter: $start, updatedBefore: $since}) { ...n }` +
	` } fragment n on RunsOrError { __typename ... on Runs { count } }`

// failedRunsScript returns the part of the watch check that reads Dagster's
// runs with curl. It needs $since (the target's clock at the deploy, in Unix
// seconds) and appends "N of M runs failed since deploy, K of L before" to
// $summary; when degraded it prints that line and exits 1; when the API
// cannot be read it exits 2 (unknown).
func failedRunsScript(f FailedRuns) string {
	url := f.URL
	if url == "" {
		url = DefaultDagsterGraphQL
	}
	permille := int(math.Round(f.MaxShare * 1000))
	var b strings.Builder
	b.WriteString(`now=$(date +%s) || exit 2
win=$((now - since))
[ "$win" -gt 0 ] || win=1
start=$((since - win))
if ! command -v curl >/dev/null 2>&1; then
  echo "curl is not installed on the target: Dagster's runs cannot be read"; exit 2
fi
`)
	fmt.Fprintf(&b, "q=%s\n", shell.Quote(runsQuery))
	b.WriteString(`body=$(printf '{"query":"%s","variables":{"since":%s,"start":%s}}' "$q" "$since" "$start")
`)
	fmt.Fprintf(&b, "resp=$(curl -sS -f --noproxy '*' --max-time 20 -H 'Content-Type: application/json' --data-binary \"$body\" %s) || {\n", shell.Quote(url))
	b.WriteString(`  echo "Dagster's GraphQL API did not answer"; exit 2
}
flat=$(printf '%s' "$resp" | tr -d ' \t\r\n')
count() { printf '%s\n' "$flat" | sed -n 's/.*"'"$1"'":{"__typename":"Runs","count":\([0-9][0-9]*\)}.*/\1/p'; }
fa=$(count fa); ta=$(count ta); fb=$(count fb); tb=$(count tb)
if [ -z "$fa" ] || [ -z "$ta" ] || [ -z "$fb" ] || [ -z "$tb" ]; then
  printf '%.2000s\n' "$resp"
  echo "Dagster's GraphQL API gave no run counts"; exit 2
fi
runs="$fa of $ta runs failed since deploy, $fb of $tb before"
`)
	// share_after >= max_share, in whole numbers: fa/ta >= permille/1000;
	// share_after > share_before: fa/ta > fb/tb (none before: share 0).
	fmt.Fprintf(&b, `if [ "$ta" -ge %d ] && [ $((fa * 1000)) -ge $((%d * ta)) ] &&
  { [ "$tb" -eq 0 ] || [ $((fa * tb)) -gt $((fb * ta)) ]; }; then
  echo "$runs"; exit 1
fi
summary="$summary; $runs"
`, f.MinRuns, permille)
	return b.String()
}
