package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// DefaultBlockedCIDRs are never dialled unless --allowed-cidrs overrides them: loopback, link-local
// (which holds 169.254.169.254 and the other cloud metadata addresses), "this network" 0.0.0.0/8, the
// unspecified address, and their IPv6 equivalents, including IPv4-mapped forms. IPv6 addresses that
// embed an IPv4 address (NAT64, 6to4, IPv4-compatible, SIIT) are checked against the IPv4 ranges too.
var DefaultBlockedCIDRs = []string{
	"127.0.0.0/8",
	"169.254.0.0/16",
	"0.0.0.0/8",
	"100.100.100.200/32", // Alibaba Cloud metadata
	"::1/128",
	"::/128",
	"fe80::/10",
	"fd00:ec2::254/128", // AWS IMDS over IPv6
	"::ffff:127.0.0.0/104",
	"::ffff:169.254.0.0/112",
	"::ffff:0.0.0.0/104",
}

// PrivateCIDRs are the private ranges: RFC 1918, carrier-grade NAT, IPv6 unique-local, and their
// IPv4-mapped forms (the other IPv6 forms that embed an IPv4 address are judged by that address). They
// are refused unless the endpoint's namespace is allowed private egress (--private-cidrs replaces the
// list; --block-private-networks=false allows them everywhere).
var PrivateCIDRs = []string{
	"10.0.0.0/8",
	"172.16.0.0/12",
	"192.168.0.0/16",
	"100.64.0.0/10",
	"fc00::/7",
	"::ffff:10.0.0.0/104",
	"::ffff:172.16.0.0/108",
	"::ffff:192.168.0.0/112",
}

// ErrDestinationBlocked marks an attempt refused by the egress policy; it is not worth retrying until
// the endpoint's URL changes.
var ErrDestinationBlocked = errors.New("destination blocked by the operator's egress policy")

// EgressPolicy decides which addresses the operator may connect to. It is checked at dial time against
// the resolved IP address, so a DNS name that resolves (or re-resolves) to a blocked address is refused.
type EgressPolicy struct {
	// Blocked lists the refused ranges.
	Blocked []netip.Prefix
	// Private lists ranges refused like Blocked, except for endpoints whose namespace is allowed
	// private egress (AllowingPrivate).
	Private []netip.Prefix
	// PrivateHint tells, in the refusal of a private address, how its namespace can be allowed.
	PrivateHint string
	// Allowed lists ranges that are dialled even when Blocked or Private covers them.
	Allowed []netip.Prefix
}

// NewEgressPolicy parses the flag values. blocked nil means DefaultBlockedCIDRs and private nil
// PrivateCIDRs; blockPrivate false allows the private ranges everywhere.
func NewEgressPolicy(blocked, allowed, private []string, blockPrivate bool) (*EgressPolicy, error) {
	if blocked == nil {
		blocked = DefaultBlockedCIDRs
	}
	if private == nil {
		private = PrivateCIDRs
	}
	p := &EgressPolicy{}
	var err error
	if p.Blocked, err = parsePrefixes(blocked); err != nil {
		return nil, fmt.Errorf("blocked CIDRs: %w", err)
	}
	if p.Allowed, err = parsePrefixes(allowed); err != nil {
		return nil, fmt.Errorf("allowed CIDRs: %w", err)
	}
	if blockPrivate {
		if p.Private, err = parsePrefixes(private); err != nil {
			return nil, fmt.Errorf("private CIDRs: %w", err)
		}
	}
	return p, nil
}

// AllowingPrivate is the policy for endpoints whose namespace is allowed private egress: the same, with
// the private ranges open.
func (p *EgressPolicy) AllowingPrivate() *EgressPolicy {
	if p == nil || len(p.Private) == 0 {
		return p
	}
	out := *p
	out.Private = nil
	return &out
}

func parsePrefixes(values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", v, err)
		}
		out = append(out, prefix.Masked())
	}
	return out, nil
}

// Check returns an ErrDestinationBlocked error when addr may not be dialled.
//
// An IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64, 6to4, IPv4-compatible, SIIT; see
// embeddedIPv4) is also judged by that IPv4 address, because a translator on the path may deliver the
// connection to it: 64:ff9b::7f00:1 is 127.0.0.1 behind a NAT64 gateway. An allowed range that covers
// the IPv4 address allows the IPv6 form too.
func (p *EgressPolicy) Check(addr netip.Addr) error {
	if p == nil {
		return nil
	}
	addr = addr.WithZone("")
	v4, form, embedded := embeddedIPv4(addr)
	for _, allowed := range p.Allowed {
		if allowed.Contains(addr) || allowed.Contains(addr.Unmap()) || (embedded && allowed.Contains(v4)) {
			return nil
		}
	}
	if err := refuse(addr, v4, form, embedded, p.Blocked, "(see --allowed-cidrs)"); err != nil {
		return err
	}
	hint := "(a private range; see --allowed-cidrs)"
	if p.PrivateHint != "" {
		hint = "(a private range; " + p.PrivateHint + ")"
	}
	return refuse(addr, v4, form, embedded, p.Private, hint)
}

// refuse returns the refusal of addr, or of the IPv4 address it embeds, by the first range that covers
// it, with hint appended.
func refuse(addr, v4 netip.Addr, form string, embedded bool, ranges []netip.Prefix, hint string) error {
	for _, blocked := range ranges {
		if blocked.Contains(addr) || blocked.Contains(addr.Unmap()) {
			return fmt.Errorf("%w: %s is in %s %s", ErrDestinationBlocked, addr, blocked, hint)
		}
	}
	if embedded {
		for _, blocked := range ranges {
			if blocked.Contains(v4) {
				return fmt.Errorf("%w: %s (%s form of %s) is in %s %s", ErrDestinationBlocked, addr, form, v4, blocked, hint)
			}
		}
	}
	return nil
}

// IPv6 transition prefixes whose addresses carry an IPv4 address. IPv4-mapped ::ffff:0:0/96 is not
// listed: netip.Addr.Unmap handles it.
var (
	// nat64WellKnown is the NAT64 well-known prefix (RFC 6052); the IPv4 address is the last 32 bits.
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	// nat64LocalUse is the local-use NAT64 prefix (RFC 8215). Operators pick a longer prefix inside it; it
	// is read as a /96 embedding, the IPv4 address in the last 32 bits.
	nat64LocalUse = netip.MustParsePrefix("64:ff9b:1::/48")
	// sixToFour is 6to4 (RFC 3056); bits 16 to 47 are the IPv4 address.
	sixToFour = netip.MustParsePrefix("2002::/16")
	// siit is the SIIT IPv4-translated form ::ffff:0:a.b.c.d (RFC 2765); the last 32 bits.
	siit = netip.MustParsePrefix("::ffff:0:0:0/96")
	// ipv4Compatible is the deprecated IPv4-compatible form ::a.b.c.d (RFC 4291); the last 32 bits.
	ipv4Compatible = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 address that an IPv6 transition form of addr carries, with the name of
// the form, or false when addr is not such a form. :: and ::1 are not read as IPv4-compatible: they
// are the unspecified and loopback addresses, and the blocked list names them directly.
func embeddedIPv4(addr netip.Addr) (netip.Addr, string, bool) {
	if !addr.Is6() || addr.Is4In6() {
		return netip.Addr{}, "", false
	}
	b := addr.As16()
	last32 := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case nat64WellKnown.Contains(addr):
		return last32, "NAT64", true
	case nat64LocalUse.Contains(addr):
		return last32, "local-use NAT64", true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4", true
	case siit.Contains(addr):
		return last32, "SIIT IPv4-translated", true
	case ipv4Compatible.Contains(addr):
		if addr == netip.IPv6Unspecified() || addr == netip.IPv6Loopback() {
			return netip.Addr{}, "", false
		}
		return last32, "IPv4-compatible", true
	}
	return netip.Addr{}, "", false
}

// CheckHost checks a URL host that is an IP literal, so an endpoint can report a blocked destination
// before any attempt. Host names are only checked at dial time, after resolution.
func (p *EgressPolicy) CheckHost(host string) error {
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return nil
	}
	return p.Check(addr)
}

// StillBlocks reports whether a block recorded with Check's message, possibly under another policy
// (by a process started with other flags), holds under this one. A message that names no address is
// taken as still blocking.
func (p *EgressPolicy) StillBlocks(message string) bool {
	_, rest, found := strings.Cut(message, ErrDestinationBlocked.Error()+": ")
	if !found {
		return true
	}
	field, _, _ := strings.Cut(rest, " ")
	addr, err := netip.ParseAddr(field)
	if err != nil {
		return true
	}
	return p.Check(addr) != nil
}

// control runs after name resolution and before connect, on the exact address being dialled.
func (p *EgressPolicy) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialled address %q", ErrDestinationBlocked, address)
	}
	return p.Check(addr)
}

// ValidateURL checks an endpoint URL the way the API server's CEL rule does, plus the operator-wide
// https requirement. The message never echoes the URL, which may carry credentials.
func ValidateURL(raw string, requireHTTPS bool) error {
	if len(raw) == 0 || len(raw) > 2048 {
		return errors.New("url must be 1 to 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("url cannot be parsed")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("url must use http or https")
	}
	if u.Hostname() == "" {
		return errors.New("url must be absolute, with a host")
	}
	if requireHTTPS && u.Scheme != "https" {
		return ErrInsecureURL
	}
	return nil
}

// ErrInsecureURL is returned by ValidateURL for an http URL when https is required.
var ErrInsecureURL = errors.New("url must use https: the operator runs with --require-https")
