package policy

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// IP protocol numbers used in map state keys. ProtoAny (0) in a key means
// every protocol.
const (
	ProtoAny    uint8 = 0
	ProtoICMP   uint8 = 1
	ProtoIGMP   uint8 = 2
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoVRRP   uint8 = 112
	ProtoSCTP   uint8 = 132
)

// knownProtos are the protocols that rules can name; every other protocol
// is only ever matched by rules without ports. VRRP and IGMP have no
// ports: their rules cover the whole (unused) port space, and the
// datapath looks them up with port 0.
var knownProtos = [...]uint8{ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6, ProtoVRRP, ProtoIGMP}

// ProtoName names a protocol number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoAny:
		return "ANY"
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoICMPv6:
		return "ICMPv6"
	case ProtoSCTP:
		return "SCTP"
	case ProtoVRRP:
		return "VRRP"
	case ProtoIGMP:
		return "IGMP"
	}
	return strconv.Itoa(int(p))
}

// HasPorts reports whether a protocol's rules and lookups have ports (or,
// for ICMP, types); VRRP and IGMP have none and are looked up as port 0.
func HasPorts(p uint8) bool {
	return p != ProtoVRRP && p != ProtoIGMP
}

// ParseProto parses a protocol name or number.
func ParseProto(s string) (uint8, error) {
	switch strings.ToUpper(s) {
	case "TCP":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "SCTP":
		return ProtoSCTP, nil
	case "ICMP":
		return ProtoICMP, nil
	case "ICMPV6":
		return ProtoICMPv6, nil
	case "VRRP":
		return ProtoVRRP, nil
	case "IGMP":
		return ProtoIGMP, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q", s)
	}
	return uint8(n), nil
}

// portSpec is one compiled port of a rule: a range of one protocol, or a
// named port resolved against the cluster's container ports.
type portSpec struct {
	proto  uint8
	lo, hi uint16
	name   string // named port; lo/hi unused
}

// portRange is a resolved port range of one protocol.
type portRange struct {
	proto  uint8
	lo, hi uint16
}

func (p portRange) contains(proto uint8, port uint16) bool {
	return p.proto == proto && p.lo <= port && port <= p.hi
}

func protosOf(p v1alpha1.L4Proto) []uint8 {
	switch p {
	case v1alpha1.ProtoTCP:
		return []uint8{ProtoTCP}
	case v1alpha1.ProtoUDP:
		return []uint8{ProtoUDP}
	case v1alpha1.ProtoSCTP:
		return []uint8{ProtoSCTP}
	case v1alpha1.ProtoVRRP:
		return []uint8{ProtoVRRP}
	case v1alpha1.ProtoIGMP:
		return []uint8{ProtoIGMP}
	}
	// ANY, or empty, is TCP, UDP and SCTP, as in Cilium.
	return []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}
}

// compilePorts compiles the ports of a port rule.
func compilePorts(ports []v1alpha1.PortProtocol, fld *field.Path) ([]portSpec, field.ErrorList) {
	var out []portSpec
	var errs field.ErrorList
	for i, pp := range ports {
		p := fld.Index(i)
		switch pp.Protocol {
		case "", v1alpha1.ProtoTCP, v1alpha1.ProtoUDP, v1alpha1.ProtoSCTP, v1alpha1.ProtoAny:
		case v1alpha1.ProtoVRRP, v1alpha1.ProtoIGMP:
			// Cilium 1.18 (pkg/policy/api/rule_validation.go,
			// PortProtocol.Validate): the port of VRRP and IGMP "must be
			// empty or 0"; the filter is the protocol's port 0
			// (pkg/policy/rule_test.go TestIPProtocolsWithNoTransportPorts).
			if (pp.Port != "" && pp.Port != "0") || pp.EndPort != 0 {
				errs = append(errs, field.Invalid(p, pp.Port, fmt.Sprintf("%s has no ports: leave port and endPort out (or set port to 0)", pp.Protocol)))
				continue
			}
			out = append(out, portSpec{proto: protosOf(pp.Protocol)[0], hi: 65535})
			continue
		default:
			errs = append(errs, field.NotSupported(p.Child("protocol"), pp.Protocol, []string{"TCP", "UDP", "SCTP", "VRRP", "IGMP", "ANY"}))
			continue
		}
		if pp.Port == "" {
			errs = append(errs, field.Required(p.Child("port"), "port is required, except for VRRP and IGMP"))
			continue
		}
		n, err := strconv.ParseUint(pp.Port, 10, 32)
		if err != nil {
			if !isPortName(pp.Port) {
				errs = append(errs, field.Invalid(p.Child("port"), pp.Port, "must be a number 0-65535 or a port name (lower-case letters, digits and '-', at most 15)"))
				continue
			}
			if pp.EndPort != 0 {
				errs = append(errs, field.Invalid(p.Child("endPort"), pp.EndPort, "a named port cannot have an endPort"))
				continue
			}
			for _, proto := range protosOf(pp.Protocol) {
				out = append(out, portSpec{proto: proto, name: pp.Port})
			}
			continue
		}
		if n > 65535 {
			errs = append(errs, field.Invalid(p.Child("port"), pp.Port, "must be between 0 and 65535"))
			continue
		}
		lo, hi := uint16(n), uint16(n)
		switch {
		case n == 0 && pp.EndPort == 0:
			hi = 65535 // port 0 is every port, as in Cilium
		case pp.EndPort != 0:
			if pp.EndPort < 0 || pp.EndPort > 65535 {
				errs = append(errs, field.Invalid(p.Child("endPort"), pp.EndPort, "must be between 0 and 65535"))
				continue
			}
			if int64(pp.EndPort) < int64(n) {
				errs = append(errs, field.Invalid(p.Child("endPort"), pp.EndPort, fmt.Sprintf("must not be below port %d", n)))
				continue
			}
			hi = uint16(pp.EndPort)
		}
		for _, proto := range protosOf(pp.Protocol) {
			out = append(out, portSpec{proto: proto, lo: lo, hi: hi})
		}
	}
	return out, errs
}

// portlessL7 reports L7 rules, server names or TLS on a VRRP or IGMP
// port: they need a transport (Cilium: "L7 rules can only apply to TCP").
func portlessL7(ports []v1alpha1.PortProtocol, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, pp := range ports {
		if !pp.Protocol.HasPorts() {
			errs = append(errs, field.Invalid(fld.Index(i).Child("protocol"), pp.Protocol,
				"L7 rules, serverNames and TLS need a TCP or UDP port; "+string(pp.Protocol)+" has none"))
		}
	}
	return errs
}

func isPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	letter := false
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return letter
}

// ICMP type names, as Cilium accepts them.
var (
	icmpV4Types = map[string]uint16{
		"EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
		"RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11, "ParameterProblem": 12,
		"Timestamp": 13, "TimestampReply": 14, "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
	}
	icmpV6Types = map[string]uint16{
		"DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
		"EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
		"MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
		"NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137,
		"RouterRenumbering": 138, "ICMPNodeInformationQuery": 139, "ICMPNodeInformationResponse": 140,
		"InverseNeighborDiscoverySolicitation": 141, "InverseNeighborDiscoveryAdvertisement": 142,
		"HomeAgentAddressDiscoveryRequest": 144, "HomeAgentAddressDiscoveryReply": 145,
		"MobilePrefixSolicitation": 146, "MobilePrefixAdvertisement": 147,
		"DuplicateAddressRequestCodeSuffix": 157, "DuplicateAddressConfirmationCodeSuffix": 158,
		"ExtendedEchoRequest": 160, "ExtendedEchoReply": 161,
	}
)

// ICMPType parses an ICMP type given by number or name for a family
// ("IPv4", the default, or "IPv6").
func ICMPType(family string, t intstr.IntOrString) (uint16, error) {
	if t.Type == intstr.Int {
		if t.IntVal < 0 || t.IntVal > 255 {
			return 0, fmt.Errorf("ICMP type %d is not between 0 and 255", t.IntVal)
		}
		return uint16(t.IntVal), nil
	}
	if n, err := strconv.ParseUint(t.StrVal, 10, 8); err == nil {
		return uint16(n), nil
	}
	table := icmpV4Types
	if family == "IPv6" {
		table = icmpV6Types
	}
	if n, ok := table[t.StrVal]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("unknown %s ICMP type %q", strings.TrimSpace(family+" "), t.StrVal)
}

func compileICMPs(icmps []v1alpha1.ICMPRule, fld *field.Path) ([]portSpec, field.ErrorList) {
	var out []portSpec
	var errs field.ErrorList
	for i, r := range icmps {
		for j, f := range r.Fields {
			p := fld.Index(i).Child("fields").Index(j)
			if f.Type == nil {
				errs = append(errs, field.Required(p.Child("type"), "ICMP type is required"))
				continue
			}
			proto := ProtoICMP
			switch f.Family {
			case "", "IPv4":
			case "IPv6":
				proto = ProtoICMPv6
			default:
				errs = append(errs, field.NotSupported(p.Child("family"), f.Family, []string{"IPv4", "IPv6"}))
				continue
			}
			t, err := ICMPType(f.Family, *f.Type)
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("type"), f.Type.String(), err.Error()))
				continue
			}
			out = append(out, portSpec{proto: proto, lo: t, hi: t})
		}
	}
	return out, errs
}
