#!/usr/bin/env bash
# Fails, naming the file and the link, when a relative Markdown link in a
# tracked .md file does not resolve, or when Go source names a docs/*.md
# file that does not exist. Links to web addresses and pure anchors are
# not checked.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

bad=()
while IFS= read -r f; do
	dir=$(dirname -- "$f")
	# ](target) or ](target#anchor) or ](target "title"): keep the target.
	while IFS= read -r target; do
		case $target in '' | http://* | https://* | mailto:*) continue ;; esac
		[[ -e $dir/$target ]] || bad+=("$f: $target")
	done < <(grep -o '](\([^)#" ]*\)' -- "$f" | sed 's/^](//')
done < <(git ls-files '*.md')

while IFS= read -r ref; do
	[[ -e $ref ]] || bad+=("Go source names $ref")
done < <(git ls-files -z '*.go' | xargs -0 grep -hoE 'docs/[A-Za-z0-9_./-]+\.md' | sort -u)

if ((${#bad[@]})); then
	echo "broken documentation links:"
	printf '  %s\n' "${bad[@]}"
	exit 1
fi
