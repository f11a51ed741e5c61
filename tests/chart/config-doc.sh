#!/usr/bin/env bash
# Checks that docs/configuration.md documents exactly the settings that
# `build/talos-csr-signer --help` lists: every environment variable and flag of
# --help appears in the settings table of the doc, on the same row, and every
# row of that table is a setting --help knows.
# --help format: one line per setting, "  --flag-name  ENV_NAME  help" or
# "  (env only)  ENV_NAME  help". Doc table rows: "| `ENV_NAME` | `--flag-name` | ...".
# Prints "N passed, M failed"; exits non-zero on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${TCS_BIN:-$root/build/talos-csr-signer}
doc=$root/docs/configuration.md

if [ ! -x "$bin" ]; then
	if [ "${CI:-false}" = true ]; then
		echo "FAIL: $bin not built (make build)"
		echo "config-doc: 0 passed, 1 failed"
		exit 1
	fi
	echo "SKIPPED: $bin not built (make build)"
	exit 0
fi
[ -r "$doc" ] || { echo "FAIL: $doc missing"; echo "config-doc: 0 passed, 1 failed"; exit 1; }

pass=0
fail=0
ok() { pass=$((pass + 1)); }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }

# ENV FLAG pairs ("-" for env only) from --help.
help_pairs=$("$bin" --help 2>&1 | awk '
	$1 ~ /^--[a-z0-9-]+$/ && $2 ~ /^[A-Z][A-Z0-9_]+$/ { print $2, $1; next }
	$1 == "(env" && $2 == "only)" && $3 ~ /^[A-Z][A-Z0-9_]+$/ { print $3, "-" }
')
[ -n "$help_pairs" ] || { ko "no settings found in --help"; echo "config-doc: $pass passed, $fail failed"; exit 1; }

# ENV FLAG pairs from the doc's table rows whose first cell is `ENV_NAME`.
doc_pairs=$(awk -F'|' '
	$2 ~ /^ *`[A-Z][A-Z0-9_]+` *$/ {
		env = $2; gsub(/[ `]/, "", env)
		flag = $3; gsub(/[ `]/, "", flag)
		if (flag !~ /^--[a-z0-9-]+$/) flag = "-"
		print env, flag
	}' "$doc")

while read -r env flag; do
	row=$(awk -v e="$env" '$1 == e' <<<"$doc_pairs")
	if [ -z "$row" ]; then
		ko "$env (from --help) is not in the table of docs/configuration.md"
	elif [ "$row" != "$env $flag" ]; then
		ko "$env: --help says flag '$flag', docs/configuration.md says '${row#* }'"
	else
		ok
	fi
done <<<"$help_pairs"

while read -r env flag; do
	if awk -v e="$env" '$1 == e { f = 1 } END { exit !f }' <<<"$help_pairs"; then
		ok
	else
		ko "$env is documented in docs/configuration.md but --help does not list it"
	fi
done <<<"$doc_pairs"

# Each default that --help shows must be the one the doc states.
while IFS= read -r line; do
	env=$(awk '{ print ($1 == "(env") ? $3 : $2 }' <<<"$line")
	def=$(sed -n 's/.*\[default: \(.*\)\]$/\1/p' <<<"$line")
	[ -n "$def" ] || continue
	if awk -F'|' -v e="\`$env\`" -v d="\`$def\`" '
		{ c = $2; gsub(/ /, "", c) } c == e && index($4, d) { f = 1 } END { exit !f }' "$doc"; then
		ok
	else
		ko "$env: default \`$def\` (from --help) is not in its row of docs/configuration.md"
	fi
done < <("$bin" --help 2>&1 | grep -E '^  (--|\(env only\))')

echo "config-doc: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
