package netnstest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// IP protocol numbers of the port-less protocols the raw helpers send.
const (
	ProtoIGMP uint8 = 2
	ProtoVRRP uint8 = 112
)

// ListenIP opens a raw IPv4 socket for one IP protocol inside ns, bound to
// addr, closed on cleanup. It receives every datagram of the protocol for
// addr that reaches the namespace's stack (the kernel's own handler, as
// IGMP's, still runs).
func ListenIP(t testing.TB, ns netns.NsHandle, proto uint8, addr netip.Addr) *net.IPConn {
	t.Helper()
	var c *net.IPConn
	err := Run(ns, func() error {
		pc, err := net.ListenPacket(fmt.Sprintf("ip4:%d", proto), addr.String())
		if err != nil {
			return err
		}
		c = pc.(*net.IPConn)
		return nil
	})
	if err != nil {
		t.Fatalf("raw socket for IP protocol %d on %s: %v", proto, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// SendIP sends one datagram of an IP protocol from inside ns to dst; the
// kernel writes the IPv4 header.
func SendIP(ns netns.NsHandle, proto uint8, dst netip.Addr, payload []byte) error {
	return Run(ns, func() error {
		pc, err := net.ListenPacket(fmt.Sprintf("ip4:%d", proto), "0.0.0.0")
		if err != nil {
			return fmt.Errorf("raw socket for IP protocol %d: %w", proto, err)
		}
		defer pc.Close()
		if _, err := pc.WriteTo(payload, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("sending IP protocol %d to %s: %w", proto, dst, err)
		}
		return nil
	})
}

// ReceiveIP waits up to timeout for c to receive payload from src;
// datagrams from elsewhere or with other contents are skipped. If none
// came, the error wraps os.ErrDeadlineExceeded.
func ReceiveIP(c *net.IPConn, src netip.Addr, payload []byte, timeout time.Duration) error {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		if a, ok := from.(*net.IPAddr); ok && a.IP.Equal(src.AsSlice()) && bytes.Equal(buf[:n], payload) {
			return nil
		}
	}
}

// VRRPAdvertisement is a VRRPv2 advertisement (RFC 3768) of one virtual
// router with one address and no authentication.
func VRRPAdvertisement(vrid, priority byte, vip netip.Addr) []byte {
	b := []byte{0x21, vrid, priority, 1, 0, 1, 0, 0}
	ip := vip.As4()
	b = append(b, ip[:]...)
	b = append(b, make([]byte, 8)...) // authentication data
	binary.BigEndian.PutUint16(b[6:], inetChecksum(b))
	return b
}

// IGMPReport is an IGMPv2 membership report (RFC 2236) for group.
func IGMPReport(group netip.Addr) []byte {
	g := group.As4()
	b := []byte{0x16, 0, 0, 0, g[0], g[1], g[2], g[3]}
	binary.BigEndian.PutUint16(b[2:], inetChecksum(b))
	return b
}

// inetChecksum is the Internet checksum (RFC 1071) of b.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
