#!/usr/bin/env bash
# Fails, naming the files, when a tracked file is an executable binary: an
# ELF executable or shared object, a Mach-O or PE image, or any file with
# the executable bit that is not text. Build outputs belong in bin/ or in
# .gitignore, never in the repository. Allowed: scripts (text with the
# executable bit) and ELF relocatable objects such as the BPF objects that
# bpf2go generates.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

# magic prints the first n bytes of a file as lower-case hex.
magic() { head -c "$2" -- "$1" | od -An -tx1 | tr -d ' \n'; }

bad=()
while IFS= read -r -d '' entry; do
	mode=${entry%% *}
	f=${entry#*$'\t'}
	# Symlinks and gitlinks are not file contents; a file deleted from the
	# work tree is not read.
	[[ $mode == 100644 || $mode == 100755 ]] && [[ -f $f && ! -L $f ]] || continue
	why=""
	m=$(magic "$f" 18)
	case $m in
	7f454c46*)
		# e_type (offset 16, both byte orders): 2 executable, 3 shared object
		# or PIE executable, 4 core dump; 1 (relocatable) is allowed.
		case ${m:32:4} in
		0200 | 0002) why="ELF executable" ;;
		0300 | 0003) why="ELF shared object or PIE executable" ;;
		0400 | 0004) why="ELF core dump" ;;
		esac
		;;
	feedface* | feedfacf* | cefaedfe* | cffaedfe*) why="Mach-O executable" ;;
	4d5a*)
		if [[ $(head -c 8000 -- "$f" | tr -dc '\000' | wc -c) -gt 0 ]]; then why="PE executable"; fi
		;;
	esac
	if [[ -z $why && $mode == 100755 && $(head -c 8000 -- "$f" | tr -dc '\000' | wc -c) -gt 0 ]]; then
		why="executable and not text"
	fi
	if [[ -n $why ]]; then bad+=("$f: $why"); fi
done < <(git ls-files -s -z)

if ((${#bad[@]} > 0)); then
	echo "tracked executable binaries (git rm them; build outputs go to bin/ or .gitignore):" >&2
	printf '  %s\n' "${bad[@]}" >&2
	exit 1
fi
