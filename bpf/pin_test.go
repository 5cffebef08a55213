package bpf

import (
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/policy"
)

// bpffs mounts a throwaway bpf filesystem; unmounting it on cleanup also
// drops every pin left in it, so a failed test leaves nothing attached.
func bpffs(t *testing.T) string {
	t.Helper()
	requireKernel(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Skipf("cannot mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestRestartKeepsEnforcement: the agent's datapath closes (a restart);
// pinned maps and links keep enforcing, established flows keep flowing,
// and the next Load reuses the pinned state instead of wiping it.
func TestRestartKeepsEnforcement(t *testing.T) {
	pin := filepath.Join(bpffs(t), "portcullis")
	f := newFixtureWith(t, Options{PinPath: pin}, serverPolicy, clientPolicy)
	a, b := f.a, f.b
	for _, port := range []int{8080, 9190} {
		echo(listenTCP(t, b.ns, nil, addr(b.ip, port)))
	}
	open := f.mustConnect(t, a, addr(b.ip, 8080))
	f.mustNotConnect(t, a, addr(b.ip, 9190))
	used, _ := f.d.PolicyEntries()

	if err := f.d.Close(); err != nil {
		t.Fatal(err)
	}
	f.mustNotConnect(t, a, addr(b.ip, 9190))
	if err := roundTrip(open, "while the agent is away", defaultWait); err != nil {
		t.Fatalf("established flow while the agent is away: %v", err)
	}
	f.mustConnect(t, a, addr(b.ip, 8080))

	d2, err := Load(Options{PinPath: pin, RuleID: f.eng.ruleID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d2.Close() })
	if got, _ := d2.PolicyEntries(); got != used {
		t.Errorf("reloaded policy entries = %d, want %d", got, used)
	}
	eps, err := d2.Endpoints()
	if err != nil || len(eps) != 2 {
		t.Fatalf("reloaded endpoints %+v (%v)", eps, err)
	}
	// The new agent re-attaches: the pinned links get the new programs in
	// place, and a sync with unchanged policy writes nothing new.
	for _, ep := range eps {
		if err := netnstest.Run(f.tn.node, func() error { return d2.AttachEndpoint(ep.IfIndex, ep.IP, ep.ID, ep.Flags) }); err != nil {
			t.Fatal(err)
		}
	}
	f.d = d2
	f.eng.sync(t, d2, f.tn.pods, f.epIDs)
	if got, _ := d2.PolicyEntries(); got != used {
		t.Errorf("policy entries after resync = %d, want %d", got, used)
	}
	f.mustNotConnect(t, a, addr(b.ip, 9190))
	if err := roundTrip(open, "after the restart", defaultWait); err != nil {
		t.Fatal(err)
	}

	// Remove tears everything down: no pins, no programs.
	if err := d2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(filepath.Join(pin, "links"))
		t.Errorf("pin path left after Remove: %v %v", err, entries)
	}
	f.mustConnect(t, a, addr(b.ip, 9190))
}

// TestIPCacheSurvivesReload: what one datapath wrote to the pinned
// ipcache, the next Load of the same pins reads back (the agent prunes
// the entries of pods that went away while it was down from this).
func TestIPCacheSurvivesReload(t *testing.T) {
	pin := filepath.Join(bpffs(t), "portcullis")
	want := map[netip.Prefix]policy.NumericIdentity{
		netip.MustParsePrefix("10.244.193.7/32"): 4242,
		netip.MustParsePrefix("10.244.255.1/32"): policy.IdentityRemoteNode,
		netip.MustParsePrefix("10.244.128.0/20"): 16777300,
	}
	d := loadDP(t, Options{PinPath: pin})
	for p, id := range want {
		if err := d.SetIPCache(p, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := loadDP(t, Options{PinPath: pin})
	t.Cleanup(func() { _ = d2.Remove() })
	got, err := d2.IPCache()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("ipcache after reload: %v, want %v", got, want)
	}
	if got, err := ReadPinnedIPCache(pin); err != nil || !maps.Equal(got, want) {
		t.Errorf("ReadPinnedIPCache: %v, %v; want %v", got, err, want)
	}
}
