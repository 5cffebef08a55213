// Command loadgen is the part of the proxy benchmarks that wrk and h2load
// cannot do:
//
//	loadgen rate  -addr A -path P -rps 1000 -d 10s -c 16   open loop at a fixed rate, HTTP/1.1 keep-alive
//	loadgen grpc  -addr A -c 16 -d 10s                     closed-loop gRPC unary calls (bench.Echo/Echo)
//	loadgen idle  -addr A -path P -n 10000 -pid PID        RSS of process PID per idle keep-alive connection
//	loadgen check -addr A -path P -want 403                one request, exit 1 unless the status is as wanted
//
// Results are printed as one line of key=value pairs for bench/proxy/run.sh.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"portcullis.dev/portcullis/bench/proxy/echo"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:28080", "server address")
	path := fs.String("path", "/", "request path")
	host := fs.String("host", "origin", "Host header")
	rps := fs.Int("rps", 1000, "requests per second (rate)")
	dur := fs.Duration("d", 10*time.Second, "duration (rate, grpc)")
	conns := fs.Int("c", 16, "connections (rate) or concurrent calls (grpc)")
	n := fs.Int("n", 10000, "idle connections (idle)")
	pid := fs.Int("pid", 0, "process whose RSS is measured (idle)")
	want := fs.Int("want", 200, "wanted status (check)")
	_ = fs.Parse(os.Args[2:])

	var err error
	switch os.Args[1] {
	case "rate":
		err = rate(*addr, request(*host, *path), *rps, *dur, *conns)
	case "grpc":
		err = grpcLoop(*addr, *dur, *conns)
	case "idle":
		err = idle(*addr, request(*host, *path), *n, *pid)
	case "check":
		err = check(*addr, request(*host, *path), *want)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen rate|grpc|idle|check [flags]")
	os.Exit(2)
}

func request(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: loadgen\r\n\r\n")
}

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

// do sends req and reads the whole response; it returns the status.
func (c *conn) do(req []byte) (int, error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err == nil && resp.Close {
		err = fmt.Errorf("status %d with Connection: close", resp.StatusCode)
	}
	return resp.StatusCode, err
}

func check(addr string, req []byte, want int) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.c.Close()
	_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
	st, err := c.do(req)
	if err != nil && st == 0 {
		return err
	}
	if st != want {
		return fmt.Errorf("%s: status %d, want %d", addr, st, want)
	}
	fmt.Printf("status=%d\n", st)
	return nil
}

// rate sends requests at a fixed rate (open loop: the send times are
// fixed in advance and do not wait for responses) over a pool of
// keep-alive connections, each carrying one request at a time. Latency is
// measured from the write of the request to the end of the response
// (p50_us, p99_us, ...) and also from the scheduled send time
// (sched_p50_us, sched_p99_us: counts a wait for a free connection and the
// generator's own timer lag, which is the same for every target).
func rate(addr string, req []byte, rps int, d time.Duration, nconn int) error {
	total := int(float64(rps) * d.Seconds())
	pool := make([]*conn, nconn)
	for i := range pool {
		c, err := dial(addr)
		if err != nil {
			return err
		}
		defer c.c.Close()
		// Warm up each connection (the proxy dials its upstream lazily).
		if st, err := c.do(req); err != nil || st != 200 {
			return fmt.Errorf("warm-up request: status %d, %v", st, err)
		}
		pool[i] = c
	}
	jobs := make(chan time.Time, total)
	lat := make([][]time.Duration, nconn)
	sched := make([][]time.Duration, nconn)
	var errs, non200 atomic.Int64
	var wg sync.WaitGroup
	for i, c := range pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples := make([]time.Duration, 0, total/nconn+16)
			fromSched := make([]time.Duration, 0, total/nconn+16)
			for at := range jobs {
				sent := time.Now()
				st, err := c.do(req)
				samples = append(samples, time.Since(sent))
				fromSched = append(fromSched, time.Since(at))
				if err != nil {
					errs.Add(1)
					// Replace a broken connection; count the failure.
					if nc, derr := dial(addr); derr == nil {
						c = nc
					}
				} else if st != 200 {
					non200.Add(1)
				}
			}
			lat[i] = samples
			sched[i] = fromSched
		}()
	}
	interval := time.Second / time.Duration(rps)
	start := time.Now().Add(50 * time.Millisecond)
	var late time.Duration
	for i := 0; i < total; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		if l := time.Since(at); l > late {
			late = l
		}
		jobs <- at
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	fs := slices.Concat(sched...)
	slices.Sort(fs)
	fmt.Printf("rps=%.0f p50_us=%d p99_us=%d p999_us=%d max_us=%d sched_p50_us=%d sched_p99_us=%d n=%d errors=%d non200=%d max_sched_lag_us=%d\n",
		float64(len(all))/elapsed.Seconds(), pct(all, 50).Microseconds(), pct(all, 99).Microseconds(),
		pct(all, 99.9).Microseconds(), all[len(all)-1].Microseconds(), pct(fs, 50).Microseconds(), pct(fs, 99).Microseconds(),
		len(all), errs.Load(), non200.Load(), late.Microseconds())
	if errs.Load() > 0 || non200.Load() > 0 {
		return fmt.Errorf("%d errors, %d non-200 responses", errs.Load(), non200.Load())
	}
	return nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// grpcLoop runs conc goroutines that call bench.Echo/Echo back to back
// over one client connection for d.
func grpcLoop(addr string, d time.Duration, conc int) error {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	in := wrapperspb.Bytes([]byte("portcullis benchmark payload"))
	call := func(ctx context.Context) error {
		_, err := echo.Call(ctx, cc, in)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = call(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("warm-up call: %w", err)
	}
	lat := make([][]time.Duration, conc)
	var errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s []time.Duration
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := call(context.Background()); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				s = append(s, time.Since(t))
			}
			lat[i] = s
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	fmt.Printf("rps=%.0f p50_us=%d p99_us=%d n=%d errors=%d\n", float64(len(all))/elapsed.Seconds(),
		pct(all, 50).Microseconds(), pct(all, 99).Microseconds(), len(all), errs.Load())
	if errs.Load() > 0 {
		return fmt.Errorf("%d failed calls, first: %v", errs.Load(), firstErr.Load())
	}
	return nil
}

// idle opens n keep-alive connections, sends one request on each (so that
// the proxy has its upstream side too) and reports how much the resident
// set of process pid grew, per connection held. Connections that fail are
// counted and closed (failed=N, first=ERROR); after 100 failures (a
// connection limit) it stops opening more.
func idle(addr string, req []byte, n, pid int) error {
	before, err := rss(pid)
	if err != nil {
		return err
	}
	conns := make([]*conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.c.Close()
		}
	}()
	// A few at a time, so that the listener's backlog never overflows.
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first atomic.Value
	var failed atomic.Int64
	sem := make(chan struct{}, 64)
	for range n {
		if failed.Load() >= 100 {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := dial(addr)
			if err == nil {
				var st int
				_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
				st, err = c.do(req)
				_ = c.c.SetDeadline(time.Time{})
				if err == nil && st != 200 {
					err = fmt.Errorf("status %d", st)
				}
				if err != nil {
					_ = c.c.Close()
				} else {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	wg.Wait()
	if len(conns) == 0 {
		return fmt.Errorf("no connection opened: %v", first.Load())
	}
	// Let the proxy settle (a Go proxy's GC, haproxy's buffers released).
	time.Sleep(2 * time.Second)
	after, err := rss(pid)
	if err != nil {
		return err
	}
	fails := ""
	if e, ok := first.Load().(string); ok {
		fails = fmt.Sprintf(" failed=%d first=%q", failed.Load(), e)
	}
	fmt.Printf("conns=%d rss_before_kib=%d rss_after_kib=%d kib_per_conn=%.1f%s\n",
		len(conns), before, after, float64(after-before)/float64(len(conns)), fails)
	return nil
}

// rss reads VmRSS (KiB) of a process.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
