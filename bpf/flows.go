package bpf

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// RecentDestinations returns the destination addresses, among want, of
// the flows the datapath's conntrack saw a packet of within the last age:
// the connections still in use towards those addresses. The agent keeps
// toFQDNs addresses whose TTL ran out while such flows last.
func (d *Datapath) RecentDestinations(want map[netip.Addr]bool, age time.Duration) (map[netip.Addr]bool, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return nil, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	cutoff := uint64(max(ts.Nano()-age.Nanoseconds(), 0))
	out := map[netip.Addr]bool{}
	var k datapathCtKey
	var v datapathCtValue
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		if v.LastSeen < cutoff {
			continue
		}
		if a := u32Addr(k.Daddr); want[a] {
			out[a] = true
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading conntrack: %w", err)
	}
	return out, nil
}
