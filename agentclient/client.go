package agentclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"syscall"
)

// ErrAgentNotRunning is returned (wrapped) when nothing serves the socket.
var ErrAgentNotRunning = errors.New("the agent is not running")

// Client talks to one agent over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the agent serving socket ("" means
// DefaultSocket).
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket is the socket path the client uses.
func (c *Client) Socket() string { return c.socket }

// explain turns a dial failure into an error that names the socket and
// says whether the agent runs.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: no API socket at %s (start portcullis-agent on this node, or give its --api-socket with --socket)", ErrAgentNotRunning, c.socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %s refuses connections (a socket left by an agent that exited)", ErrAgentNotRunning, c.socket)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("agent API at %s: permission denied (the socket is root's only)", c.socket)
	}
	return fmt.Errorf("agent API at %s: %w", c.socket, err)
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.explain(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		return nil, fmt.Errorf("agent API at %s: %s %s: %s", c.socket, method, path, e.Error)
	}
	return resp, nil
}

// Endpoints lists the agent's local endpoints.
func (c *Client) Endpoints(ctx context.Context) ([]Endpoint, error) {
	resp, err := c.do(ctx, http.MethodGet, PathEndpoints, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var eps []Endpoint
	if err := json.NewDecoder(resp.Body).Decode(&eps); err != nil {
		return nil, fmt.Errorf("agent API at %s: decoding the endpoints: %w", c.socket, err)
	}
	return eps, nil
}

// Services lists the Service ports the agent has programmed.
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	resp, err := c.do(ctx, http.MethodGet, PathServices, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var svcs []Service
	if err := json.NewDecoder(resp.Body).Decode(&svcs); err != nil {
		return nil, fmt.Errorf("agent API at %s: decoding the services: %w", c.socket, err)
	}
	return svcs, nil
}

// FQDNCache lists what the agent's DNS proxy learned for toFQDNs.
func (c *Client) FQDNCache(ctx context.Context) ([]FQDNCacheEntry, error) {
	resp, err := c.do(ctx, http.MethodGet, PathFQDNCache, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var es []FQDNCacheEntry
	if err := json.NewDecoder(resp.Body).Decode(&es); err != nil {
		return nil, fmt.Errorf("agent API at %s: decoding the FQDN cache: %w", c.socket, err)
	}
	return es, nil
}

// Monitor follows the agent's flow events, calling fn for each line (an
// event or a lost-events notice), until ctx is done (nil is returned), fn
// returns an error (returned), or the agent closes the stream.
func (c *Client) Monitor(ctx context.Context, fn func(MonitorLine) error) error {
	resp, err := c.do(ctx, http.MethodGet, PathMonitor, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l MonitorLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("agent API at %s: decoding a monitor line: %w", c.socket, err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("agent API at %s: monitor stream: %w", c.socket, err)
	}
	return fmt.Errorf("agent API at %s: the agent closed the monitor stream", c.socket)
}

// Trace traces a flow against the agent's live policy.
func (c *Client) Trace(ctx context.Context, req TraceRequest) (*TraceResponse, error) {
	resp, err := c.do(ctx, http.MethodPost, PathTrace, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tr TraceResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return nil, fmt.Errorf("agent API at %s: decoding the trace: %w", c.socket, err)
	}
	if tr.Result == nil {
		return nil, fmt.Errorf("agent API at %s: the trace has no result", c.socket)
	}
	return &tr, nil
}
