# perf-categories.awk sums the self-time lines of
# `perf report -g none --no-children --sort dso,symbol --stdio` by category (run.sh).
/^ +[0-9.]+%/ {
	p = $1 + 0; dso = $2; sym = $4
	if (dso ~ /kernel/) c = "kernel (TCP, syscalls, scheduler)"
	else if (sym ~ /^regexp/) c = "Go regexp (the ten rules)"
	else if (sym ~ /^(runtime|internal\/runtime)/ && sym !~ /Syscall/) c = "Go runtime (GC, scheduler, allocation)"
	else if (sym ~ /Syscall|^syscall\./) c = "Go system-call entry"
	else if (sym ~ /^portcullis\.dev/) c = "Portcullis code (proxy, policy)"
	else if (sym ~ /^golang\.org\/x\/net\/http2/) c = "x/net/http2"
	else if (sym ~ /^(bufio|net|internal\/poll|bytes|strings|strconv|net\/textproto|sync)/) c = "Go net, bufio, strings"
	else c = "other"
	sum[c] += p
}
END { for (c in sum) printf "%6.1f%%  %s\n", sum[c], c }
