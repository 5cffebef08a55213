package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"portcullis.dev/portcullis/proxy/dns"
)

// fqdnStateFile is the learner's state file in Config.StateDir.
const fqdnStateFile = "fqdn-cache.json"

// fqdnState is the state file's content: what the DNS proxy's answers
// taught, so that a restarted agent selects the same addresses from its
// first sync pass on (connections to names looked up before the restart
// keep working).
type fqdnState struct {
	Version int              `json:"version"`
	Entries []dns.CacheEntry `json:"entries"`
}

// restore reads the state file, if any, into the cache and teaches the
// engine every restored name. It runs before the first sync pass. A file
// that cannot be read is an error naming it: the agent would otherwise
// start by dropping connections to names looked up before.
func (l *fqdnLearner) restore(path string, now time.Time) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the toFQDNs state %s: %w", path, err)
	}
	var st fqdnState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("the toFQDNs state %s: %w (remove it to start without the names learned before)", path, err)
	}
	if st.Version != 1 {
		return 0, fmt.Errorf("the toFQDNs state %s: version %d, want 1", path, st.Version)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	names := l.cache.Restore(st.Entries, now)
	for _, n := range names {
		l.a.repo.ObserveDNS(n, l.cache.Addrs(n))
	}
	l.updateGauges()
	return len(names), nil
}

// save writes the cache to path atomically (a temporary file renamed).
func (l *fqdnLearner) save(path string) error {
	b, err := json.Marshal(fqdnState{Version: 1, Entries: l.cache.Entries()})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return nil
}

// changed asks the saver for a write (coalesced) and updates the gauges.
func (l *fqdnLearner) changed() {
	l.updateGauges()
	select {
	case l.dirty <- struct{}{}:
	default:
	}
}

// fqdnSaver writes the learner's state file after changes, at most every
// saveInterval, and once more when the agent stops. It writes off the
// answer's path: a hold never waits for the disk.
type fqdnSaver struct {
	l    *fqdnLearner
	path string
}

const saveInterval = 100 * time.Millisecond

func (s *fqdnSaver) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("fqdn")
	write := func() {
		if err := s.l.save(s.path); err != nil {
			log.Error(err, "saving the toFQDNs state")
		}
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-s.l.dirty:
				write()
			default:
			}
			return nil
		case <-s.l.dirty:
			write()
			select {
			case <-time.After(saveInterval):
			case <-ctx.Done():
			}
		}
	}
}
