package workloads

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Roles a child runs.
const (
	// RoleDeathstar serves [Deathstar] on the address given as argument.
	RoleDeathstar = "deathstar"
	// RoleHTTPSServer serves HTTPS (h2 and HTTP/1.1) on the address given
	// first, with the certificate and key in the two files that follow;
	// every answer is "upstream PROTO PATH sni=NAME", except gRPC
	// requests, which the gRPC health service answers.
	RoleHTTPSServer = "https-server"
	// RoleGRPCTLSClient calls the gRPC health service over TLS at the
	// address given first (one connection for the child's life), asking
	// for the server name that follows and trusting the CA file after it:
	// Command.Method "Check" or "List".
	RoleGRPCTLSClient = "grpc-tls-client"
	// RoleDoorManager serves the gRPC door manager on the address given.
	RoleDoorManager = "doormanager"
	// RoleGRPCClient dials the door manager at the address given (one
	// connection for the child's life) and makes one call per [Command].
	RoleGRPCClient = "grpc-client"
	// RoleHTTPClient makes one HTTP/1.1 request per [Command] with one
	// keep-alive transport, and counts the connections it dialled.
	RoleHTTPClient = "http-client"
	// RoleKafkaBroker serves a kfake broker on the address given (IP:PORT,
	// which it advertises) with the topics that follow.
	RoleKafkaBroker = "kafka-broker"
	// RoleKafkaClient runs the Kafka commands (KafkaProduce, ...) against
	// the broker given, with franz-go; it counts the connections it
	// dialled for produces.
	RoleKafkaClient = "kafka-client"
)

// envRole names the role (and its arguments, as a JSON array) of a child.
const envRole = "PORTCULLIS_WORKLOAD"

// maxLife bounds a child's life even if its parent never closes stdin.
const maxLife = 10 * time.Minute

// Seen is a request a server child received.
type Seen struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Proto is "HTTP/1.1", "HTTP/2.0", or "grpc".
	Proto string `json:"proto"`
	// Remote is the client's address as the server saw it.
	Remote string `json:"remote"`
	// Header holds the first value of each request header (HTTP only).
	Header map[string]string `json:"header,omitempty"`
}

// Command is one request for a client child: Method and URL (and Header)
// for the HTTP client, Method alone (a door manager method) for the gRPC
// client, Method and Topic (and Value, Group) for the Kafka client.
type Command struct {
	Method string            `json:"method"`
	URL    string            `json:"url,omitempty"`
	Header map[string]string `json:"header,omitempty"`
	// Topic, Value and Group are a Kafka command's.
	Topic string `json:"topic,omitempty"`
	Value string `json:"value,omitempty"`
	Group string `json:"group,omitempty"`
}

// Result is a client child's answer to a Command.
type Result struct {
	// Status and Body of an HTTP response.
	Status int    `json:"status,omitempty"`
	Body   string `json:"body,omitempty"`
	// Conns is how many connections the client has dialled so far.
	Conns int64 `json:"conns"`
	// Code and Message are the gRPC status of a call (Code "OK" on
	// success), or the Kafka error of a Kafka command (its name, such as
	// TOPIC_AUTHORIZATION_FAILED); Reply is a gRPC call's answer as text.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Reply   string `json:"reply,omitempty"`
	// Error is a transport error (no response at all).
	Error string `json:"error,omitempty"`
}

// line is one line a child writes.
type line struct {
	Ready  string  `json:"ready,omitempty"`
	Seen   *Seen   `json:"seen,omitempty"`
	Result *Result `json:"result,omitempty"`
}

// RunIfChild runs the workload role named in the environment and exits;
// without one it returns at once. Call it first in main or TestMain.
func RunIfChild() {
	spec := os.Getenv(envRole)
	if spec == "" {
		return
	}
	var argv []string
	if err := json.Unmarshal([]byte(spec), &argv); err != nil || len(argv) == 0 {
		fmt.Fprintf(os.Stderr, "workloads: bad %s=%q\n", envRole, spec)
		os.Exit(2)
	}
	time.AfterFunc(maxLife, func() { os.Exit(0) })
	if err := runChild(argv[0], argv[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "workloads: %s: %v\n", argv[0], err)
		os.Exit(1)
	}
	os.Exit(0)
}

// childOut serializes the child's stdout lines.
type childOut struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *childOut) write(l line) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(l)
}

func runChild(role string, args []string) error {
	out := &childOut{enc: json.NewEncoder(os.Stdout)}
	commands := make(chan Command)
	go func() {
		// Stdin closed: the parent is gone or done.
		defer os.Exit(0)
		dec := json.NewDecoder(os.Stdin)
		for {
			var c Command
			if err := dec.Decode(&c); err != nil {
				return
			}
			commands <- c
		}
	}()
	arg := func() (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("want one argument (an address), got %q", args)
		}
		return args[0], nil
	}
	switch role {
	case RoleDeathstar:
		addr, err := arg()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		out.write(line{Ready: ln.Addr().String()})
		return http.Serve(ln, Deathstar(func(r *http.Request) {
			s := &Seen{Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto, Remote: r.RemoteAddr, Header: map[string]string{}}
			for k, v := range r.Header {
				s.Header[k] = v[0]
			}
			out.write(line{Seen: s})
		}))
	case RoleHTTPSServer:
		if len(args) != 3 {
			return fmt.Errorf("want an address, a certificate file and a key file, got %q", args)
		}
		return serveHTTPS(out, args[0], args[1], args[2])
	case RoleGRPCTLSClient:
		if len(args) != 3 {
			return fmt.Errorf("want an address, a server name and a CA file, got %q", args)
		}
		return runGRPCTLSClient(out, commands, args[0], args[1], args[2])
	case RoleDoorManager:
		addr, err := arg()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		out.write(line{Ready: ln.Addr().String()})
		return NewDoorManager(func(m, remote string) {
			out.write(line{Seen: &Seen{Method: "POST", Path: m, Proto: "grpc", Remote: remote}})
		}).Serve(ln)
	case RoleGRPCClient:
		addr, err := arg()
		if err != nil {
			return err
		}
		var conns atomic.Int64
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				conns.Add(1)
				return (&net.Dialer{}).DialContext(ctx, "tcp", a)
			}))
		if err != nil {
			return err
		}
		defer cc.Close()
		out.write(line{Ready: addr})
		for c := range commands {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			reply, err := CallDoorManager(ctx, cc, c.Method)
			cancel()
			st := status.Convert(err)
			out.write(line{Result: &Result{Code: st.Code().String(), Message: st.Message(), Reply: reply, Conns: conns.Load()}})
		}
	case RoleHTTPClient:
		var conns atomic.Int64
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				conns.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, a)
			},
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     5 * time.Minute,
		}
		hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		out.write(line{Ready: "http"})
		for c := range commands {
			out.write(line{Result: httpDo(hc, c, &conns)})
		}
	case RoleKafkaBroker:
		return runKafkaBroker(out, commands, args)
	case RoleKafkaClient:
		return runKafkaClient(out, commands, args)
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}

func httpDo(hc *http.Client, c Command, conns *atomic.Int64) *Result {
	req, err := http.NewRequest(c.Method, c.URL, nil)
	if err != nil {
		return &Result{Error: err.Error(), Conns: conns.Load()}
	}
	for k, v := range c.Header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &Result{Error: err.Error(), Conns: conns.Load()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	r := &Result{Status: resp.StatusCode, Body: string(body), Conns: conns.Load()}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// Process is a running child, seen from its parent.
type Process struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	results chan Result
	exited  chan struct{}

	mu   sync.Mutex
	seen []Seen
	cond chan struct{} // closed and replaced on every new Seen
}

// Start starts cmd (the calling binary, usually run inside a pod by
// localcluster.Pod.Command) as a child in role with args, and waits until
// it is ready: a server listens, a client has its connection set up.
// cmd's Stderr is kept if set, else the child's stderr goes to ours.
func Start(cmd *exec.Cmd, role string, args ...string) (*Process, error) {
	spec, _ := json.Marshal(append([]string{role}, args...))
	cmd.Env = append(os.Environ(), envRole+"="+string(spec))
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", role, err)
	}
	p := &Process{cmd: cmd, stdin: stdin, results: make(chan Result, 16), exited: make(chan struct{}), cond: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				continue
			}
			switch {
			case l.Ready != "":
				ready <- l.Ready
			case l.Seen != nil:
				p.mu.Lock()
				p.seen = append(p.seen, *l.Seen)
				close(p.cond)
				p.cond = make(chan struct{})
				p.mu.Unlock()
			case l.Result != nil:
				p.results <- *l.Result
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before it was ready: %v", role, cmd.ProcessState)
	case <-time.After(15 * time.Second):
		_ = p.Stop()
		return nil, fmt.Errorf("%s not ready after 15s", role)
	}
}

// ErrExited is returned by Do when the child is gone.
var ErrExited = errors.New("workload exited")

// Do sends c to a client child and returns its Result.
func (p *Process) Do(c Command, timeout time.Duration) (Result, error) {
	b, _ := json.Marshal(c)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return Result{}, fmt.Errorf("sending %s %s: %w", c.Method, c.URL, err)
	}
	select {
	case r := <-p.results:
		return r, nil
	case <-p.exited:
		return Result{}, ErrExited
	case <-time.After(timeout):
		return Result{}, fmt.Errorf("no answer to %s %s after %v", c.Method, c.URL, timeout)
	}
}

// Seen returns the requests a server child has reported so far.
func (p *Process) Seen() []Seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Seen(nil), p.seen...)
}

// WaitSeen waits until a reported request satisfies match, up to timeout.
func (p *Process) WaitSeen(match func(Seen) bool, timeout time.Duration) (Seen, bool) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for _, s := range p.seen {
			if match(s) {
				p.mu.Unlock()
				return s, true
			}
		}
		c := p.cond
		p.mu.Unlock()
		select {
		case <-c:
		case <-deadline:
			return Seen{}, false
		}
	}
}

// Stop closes the child's stdin (it exits on its own) and kills it if it
// has not exited after a few seconds. It is idempotent.
func (p *Process) Stop() error {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return nil
}

// SeenPath is a match for WaitSeen: a request to method and path.
func SeenPath(method, path string) func(Seen) bool {
	return func(s Seen) bool { return s.Method == method && s.Path == path }
}
