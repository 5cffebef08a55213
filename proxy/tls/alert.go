package tls

import (
	"net"
	"time"
)

// alertAccessDenied is the TLS alert description access_denied (RFC 8446
// section 6.2): the proxy refused the connection by policy.
const alertAccessDenied = 49

// writeAlert sends a fatal alert record in the clear, as a server does
// before its first handshake message (the record version is TLS 1.2's,
// which every TLS 1.2 and 1.3 client accepts there).
func writeAlert(c net.Conn, desc byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := c.Write([]byte{21, 3, 3, 0, 2, 2, desc})
	return err
}
