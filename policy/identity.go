package policy

import (
	"fmt"
	"net/netip"
)

// NumericIdentity is a node-local security identity number. 0 means "any
// identity" in map state keys.
type NumericIdentity uint32

// Reserved identities, numbered as in Cilium.
const (
	IdentityAny           NumericIdentity = 0
	IdentityHost          NumericIdentity = 1
	IdentityWorld         NumericIdentity = 2
	IdentityUnmanaged     NumericIdentity = 3
	IdentityHealth        NumericIdentity = 4
	IdentityInit          NumericIdentity = 5
	IdentityRemoteNode    NumericIdentity = 6
	IdentityKubeAPIServer NumericIdentity = 7
	IdentityIngress       NumericIdentity = 8

	// firstEndpointIdentity is the first number given to pod identities.
	firstEndpointIdentity NumericIdentity = 256
	// firstCIDRIdentity is the first number given to CIDR identities
	// (Cilium's node-local scope).
	firstCIDRIdentity NumericIdentity = 1 << 24
)

// reservedNames maps reserved identities to their names (and entity names).
var reservedNames = map[NumericIdentity]string{
	IdentityHost:          "host",
	IdentityWorld:         "world",
	IdentityUnmanaged:     "unmanaged",
	IdentityHealth:        "health",
	IdentityInit:          "init",
	IdentityRemoteNode:    "remote-node",
	IdentityKubeAPIServer: "kube-apiserver",
	IdentityIngress:       "ingress",
}

// ReservedIdentityByName returns the reserved identity of an entity name
// such as "world" or "kube-apiserver".
func ReservedIdentityByName(name string) (NumericIdentity, bool) {
	for id, n := range reservedNames {
		if n == name {
			return id, true
		}
	}
	return 0, false
}

// Identity is a security identity: a set of identity-relevant labels and
// the number standing for it on this node.
type Identity struct {
	ID     NumericIdentity
	Labels Labels
	// Prefixes is set for CIDR identities (one prefix) and for world
	// (0.0.0.0/0 and ::/0).
	Prefixes []netip.Prefix
}

// IsReserved reports whether the identity is one of the reserved ones.
func (id *Identity) IsReserved() bool { return id.ID < firstEndpointIdentity }

// IsCIDR reports whether the identity stands for an address prefix outside
// the cluster (world included).
func (id *Identity) IsCIDR() bool { return len(id.Prefixes) > 0 }

// String names the identity for humans.
func (id *Identity) String() string {
	if n, ok := reservedNames[id.ID]; ok {
		return fmt.Sprintf("%d (reserved:%s)", id.ID, n)
	}
	if id.IsCIDR() {
		return fmt.Sprintf("%d (cidr:%s)", id.ID, id.Prefixes[0])
	}
	return fmt.Sprintf("%d (%s)", id.ID, id.Labels)
}

func reservedIdentity(id NumericIdentity) *Identity {
	ls := Labels{}
	ls.Add(SourceReserved, reservedNames[id], "")
	ident := &Identity{ID: id, Labels: ls}
	if id == IdentityWorld {
		ident.Prefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	return ident
}

// cidrIdentity returns the identity of a prefix outside the cluster: it
// carries reserved:world as in Cilium, so the world entity selects it.
func cidrIdentity(id NumericIdentity, p netip.Prefix) *Identity {
	ls := Labels{}
	ls.Add(SourceCIDR, p.String(), "")
	ls.Add(SourceReserved, "world", "")
	return &Identity{ID: id, Labels: ls, Prefixes: []netip.Prefix{p}}
}
