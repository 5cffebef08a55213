package localcluster

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateDir holds one directory per live (or dead, not yet cleaned) cluster,
// named after its prefix, with the owner's identity in it.
const StateDir = "/run/portcullis-localcluster"

// stateFile is the name of the owner record inside a cluster's state directory.
const stateFile = "owner.json"

// prefixPattern matches the names this package gives to network namespaces
// and links: "pc", 4 hex digits, "-".
var prefixPattern = regexp.MustCompile(`^pc[0-9a-f]{4}-`)

// stateNamePattern matches a state directory's name: the prefix without "-".
var stateNamePattern = regexp.MustCompile(`^pc[0-9a-f]{4}$`)

// owner is what a cluster records about itself before it makes anything.
type owner struct {
	// PID and StartTime (clock ticks since boot, field 22 of /proc/PID/stat)
	// identify the owning process; the pair survives PID reuse.
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
	// TempDir is the cluster's temporary directory (certificates, etcd data,
	// kubeconfig). Processes whose command line names it belong to the cluster.
	TempDir string `json:"tempDir"`
	Created string `json:"created"`
}

// alive reports whether the process that wrote o still runs.
func (o owner) alive() bool {
	st, err := procStartTime(o.PID)
	return err == nil && st == o.StartTime
}

// procStartTime returns field 22 of /proc/PID/stat, the process start time.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: no ')'", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(fields))
	}
	st, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat start time: %w", pid, err)
	}
	return st, nil
}

// claimPrefix picks a random prefix that no other cluster uses and records
// the calling process as its owner, and tempDirFor(prefix) as its temporary
// directory, in StateDir/pcXXXX/. The directory
// appears atomically (written under a temporary name, then renamed), so a
// concurrent CleanLeftovers never sees a state directory without an owner.
func claimPrefix(tempDirFor func(prefix string) string) (string, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", StateDir, err)
	}
	st, err := procStartTime(os.Getpid())
	if err != nil {
		return "", fmt.Errorf("reading own start time: %w", err)
	}
	for range 32 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("random prefix: %w", err)
		}
		prefix := "pc" + hex.EncodeToString(b[:]) + "-"
		rec, err := json.Marshal(owner{PID: os.Getpid(), StartTime: st, TempDir: tempDirFor(prefix), Created: time.Now().UTC().Format(time.RFC3339)})
		if err != nil {
			return "", fmt.Errorf("encoding owner record: %w", err)
		}
		tmp, err := os.MkdirTemp(StateDir, ".new-")
		if err != nil {
			return "", fmt.Errorf("creating state directory: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, stateFile), rec, 0o644); err != nil {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("writing owner record: %w", err)
		}
		// rename(2) onto an existing non-empty directory fails: that prefix
		// is taken (possibly by a dead cluster not yet cleaned), try another.
		err = os.Rename(tmp, stateDirOf(prefix))
		if err == nil {
			return prefix, nil
		}
		_ = os.RemoveAll(tmp)
		if !errors.Is(err, syscall.EEXIST) && !errors.Is(err, syscall.ENOTEMPTY) {
			return "", fmt.Errorf("recording owner of %s: %w", prefix, err)
		}
	}
	return "", errors.New("no free cluster prefix after 32 attempts")
}

// stateDirOf returns the state directory of prefix: StateDir/pcXXXX.
func stateDirOf(prefix string) string {
	return filepath.Join(StateDir, strings.TrimSuffix(prefix, "-"))
}

// readOwner returns the owner record of prefix; ok is false when there is none.
func readOwner(prefix string) (o owner, ok bool) {
	b, err := os.ReadFile(filepath.Join(stateDirOf(prefix), stateFile))
	if err != nil {
		return owner{}, false
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return owner{}, false
	}
	return o, true
}

// CleanLeftovers removes what dead clusters left behind: for every prefix
// whose owner process is gone (or that has no owner record at all), it kills
// the processes in its network namespaces and those whose command line names
// its temporary directory (etcd, kube-apiserver, the demo's operator),
// deletes its links and network namespaces, its temporary directory and its
// state directory. Clusters whose owner still runs are left alone. [Start]
// calls it; it is exported for tools that want to clean up without starting
// a cluster.
func CleanLeftovers() error {
	return cleanLeftovers(func(string, ...any) {})
}

// cleanLeftovers is CleanLeftovers with a line to logf per dead cluster.
func cleanLeftovers(logf func(format string, args ...any)) error {
	prefixes := map[string]bool{}
	entries, err := os.ReadDir(StateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", StateDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".new-") {
			// A claim in progress, or one that died between MkdirTemp and
			// rename; remove it only when it is clearly stale.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				_ = os.RemoveAll(filepath.Join(StateDir, name))
			}
			continue
		}
		if stateNamePattern.MatchString(name) {
			prefixes[name+"-"] = true
		}
	}
	// Names with the package's prefix but no state directory (the state was
	// lost) are leftovers too.
	for _, n := range netnsNames() {
		if m := prefixPattern.FindString(n); m != "" {
			prefixes[m] = true
		}
	}
	for _, p := range blackholePrefixes() {
		prefixes[p] = true
	}
	if links, err := rootLinkNames(); err == nil {
		for _, n := range links {
			if m := prefixPattern.FindString(n); m != "" {
				prefixes[m] = true
			}
		}
	}
	var errs []error
	for prefix := range prefixes {
		o, ok := readOwner(prefix)
		if ok && o.alive() {
			continue
		}
		logf("removing leftovers of dead cluster %s", strings.TrimSuffix(prefix, "-"))
		if err := removeAll(prefix, o.TempDir); err != nil {
			errs = append(errs, fmt.Errorf("cleaning leftovers of %s: %w", prefix, err))
		}
	}
	return errors.Join(errs...)
}

// removeAll removes everything that carries prefix: processes in its
// network namespaces, processes naming tempDir (when not empty), links in the
// root namespace, network namespaces, tempDir and the state directory.
func removeAll(prefix, tempDir string) error {
	var errs []error
	for _, n := range netnsNames() {
		if strings.HasPrefix(n, prefix) {
			killNetnsProcesses(n)
		}
	}
	if tempDir != "" {
		killProcessesNaming(tempDir)
	}
	if err := deleteLinksWithPrefix(prefix); err != nil {
		errs = append(errs, err)
	}
	if err := deleteServiceBlackhole(prefix); err != nil {
		errs = append(errs, err)
	}
	for _, n := range netnsNames() {
		if strings.HasPrefix(n, prefix) {
			if err := errors.Join(deleteNamedNetns(n), removeNetnsEtc(n)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if tempDir != "" && isOurTempDir(tempDir) {
		if err := os.RemoveAll(tempDir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", tempDir, err))
		}
	}
	// The extra nodes' bpffs mounts live in the state directory.
	if err := unmountUnder(stateDirOf(prefix)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(stateDirOf(prefix)); err != nil {
		errs = append(errs, fmt.Errorf("removing state of %s: %w", prefix, err))
	}
	return errors.Join(errs...)
}

// tempDirPattern is the base name of a cluster's temporary directory.
const tempDirPattern = "portcullis-localcluster-"

// isOurTempDir guards os.RemoveAll against a corrupt owner record: only a
// directory named like ours, directly under a temporary directory, goes.
func isOurTempDir(dir string) bool {
	return filepath.IsAbs(dir) && strings.HasPrefix(filepath.Base(dir), tempDirPattern) && filepath.Clean(dir) != "/"
}

// killProcessesNaming sends SIGKILL to every process (but this one) whose
// command line contains s, and waits briefly for them to go.
func killProcessesNaming(s string) {
	var pids []int
	forEachProcess(func(pid int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	})
	killAndWait(pids)
}

// forEachProcess calls f with the PID of every process but this one.
func forEachProcess(f func(pid int)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		f(pid)
	}
}

// killAndWait sends SIGKILL to pids and waits up to 5 s for them to be gone
// (a child of ours stays a zombie until reaped; that counts as gone).
func killAndWait(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && running(pid) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
