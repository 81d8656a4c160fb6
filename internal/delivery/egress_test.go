package delivery

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// mustEgressPolicy builds a policy or fails the test.
func mustEgressPolicy(t testing.TB, blocked, allowed []string, blockPrivate bool) *EgressPolicy {
	t.Helper()
	p, err := NewEgressPolicy(blocked, allowed, nil, blockPrivate)
	if err != nil {
		t.Fatalf("NewEgressPolicy(%q, %q, %v): %v", blocked, allowed, blockPrivate, err)
	}
	return p
}

// egressCase is one address and the range that must be named when it is refused ("" = allowed).
type egressCase struct {
	addr      string
	wantRange string
}

func checkEgressCases(t *testing.T, p *EgressPolicy, cases []egressCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			addr := netip.MustParseAddr(tc.addr)
			err := p.Check(addr)
			if tc.wantRange == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tc.addr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%s) = nil, want blocked by %s", tc.addr, tc.wantRange)
			}
			if !errors.Is(err, ErrDestinationBlocked) {
				t.Fatalf("Check(%s) = %v, want errors.Is ErrDestinationBlocked", tc.addr, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, addr.WithZone("").String()) {
				t.Errorf("Check(%s) message %q does not name the address", tc.addr, msg)
			}
			if !strings.Contains(msg, tc.wantRange) {
				t.Errorf("Check(%s) message %q does not name the range %s", tc.addr, msg, tc.wantRange)
			}
		})
	}
}

func TestEgressCheckDefaults(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, false)
	checkEgressCases(t, p, []egressCase{
		{"127.0.0.1", "127.0.0.0/8"},
		{"127.5.5.5", "127.0.0.0/8"},
		{"127.255.255.255", "127.0.0.0/8"},
		{"::1", "::1/128"},
		{"::ffff:127.0.0.1", "127.0.0.0/8"},
		{"169.254.169.254", "169.254.0.0/16"},
		{"::ffff:169.254.169.254", "169.254.0.0/16"},
		{"fe80::1", "fe80::/10"},
		{"fe80::1%eth0", "fe80::/10"},
		{"0.0.0.0", "0.0.0.0/8"},
		{"0.1.2.3", "0.0.0.0/8"},
		{"::ffff:0.0.0.0", "0.0.0.0/8"},
		{"::", "::/128"},
		{"100.100.100.200", "100.100.100.200/32"},
		{"fd00:ec2::254", "fd00:ec2::254/128"},

		{"10.0.0.1", ""},
		{"192.168.1.1", ""},
		{"172.20.0.1", ""},
		{"100.64.0.1", ""},
		{"100.100.100.201", ""},
		{"8.8.8.8", ""},
		{"::ffff:8.8.8.8", ""},
		{"128.0.0.1", ""},
		{"169.255.0.1", ""},
		{"2001:db8::1", ""},
		{"fd00:ec2::253", ""},
		{"fec0::1", ""},
	})
}

func TestEgressCheckBlockPrivate(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, true)
	checkEgressCases(t, p, []egressCase{
		// The defaults still apply.
		{"127.0.0.1", "127.0.0.0/8"},
		{"169.254.169.254", "169.254.0.0/16"},
		{"::1", "::1/128"},
		// RFC 1918, CGNAT and ULA.
		{"10.0.0.1", "10.0.0.0/8"},
		{"10.255.255.255", "10.0.0.0/8"},
		{"172.16.0.1", "172.16.0.0/12"},
		{"172.20.0.1", "172.16.0.0/12"},
		{"172.31.255.254", "172.16.0.0/12"},
		{"192.168.1.1", "192.168.0.0/16"},
		{"100.64.0.1", "100.64.0.0/10"},
		{"100.127.255.254", "100.64.0.0/10"},
		{"fc00::1", "fc00::/7"},
		{"fd12:3456::1", "fc00::/7"},
		{"::ffff:10.0.0.1", "10.0.0.0/8"},
		{"::ffff:172.20.0.1", "172.16.0.0/12"},
		{"::ffff:192.168.1.1", "192.168.0.0/16"},

		{"8.8.8.8", ""},
		{"172.32.0.1", ""},
		{"172.15.255.255", ""},
		{"100.128.0.1", ""},
		{"192.169.0.1", ""},
		{"2001:db8::1", ""},
	})
}

func TestEgressCheckAllowedOverridesBlocked(t *testing.T) {
	p := mustEgressPolicy(t, nil, []string{"127.0.0.0/8"}, false)
	checkEgressCases(t, p, []egressCase{
		{"127.0.0.1", ""},
		{"127.5.5.5", ""},
		{"::ffff:127.0.0.1", ""},
		// Only the listed range is opened: IPv6 loopback and the metadata service stay blocked.
		{"::1", "::1/128"},
		{"169.254.169.254", "169.254.0.0/16"},
	})

	// An allowed range opens part of a private range, and the rest stays blocked.
	p = mustEgressPolicy(t, nil, []string{" 10.1.0.0/16 ", ""}, true)
	checkEgressCases(t, p, []egressCase{
		{"10.1.2.3", ""},
		{"::ffff:10.1.2.3", ""},
		{"10.2.0.1", "10.0.0.0/8"},
	})
}

func TestEgressCustomBlockedReplacesDefaults(t *testing.T) {
	p := mustEgressPolicy(t, []string{"8.8.8.0/24"}, nil, false)
	checkEgressCases(t, p, []egressCase{
		{"8.8.8.8", "8.8.8.0/24"},
		{"::ffff:8.8.8.8", "8.8.8.0/24"},
		{"127.0.0.1", ""},
		{"169.254.169.254", ""},
		{"8.8.4.4", ""},
	})

	// A host-bits-set CIDR is masked to its network.
	p = mustEgressPolicy(t, []string{"8.8.8.8/24"}, nil, false)
	checkEgressCases(t, p, []egressCase{{"8.8.8.1", "8.8.8.0/24"}})
}

// embeddedCase is an IPv6 transition address, the IPv4 address it carries, and the range that must be
// named when it is refused ("" = allowed).
type embeddedCase struct {
	addr, v4, wantRange string
}

func checkEmbeddedCases(t *testing.T, p *EgressPolicy, cases []embeddedCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			addr := netip.MustParseAddr(tc.addr)
			if tc.v4 != "" {
				got, _, ok := embeddedIPv4(addr)
				if want := netip.MustParseAddr(tc.v4); !ok || got != want {
					t.Fatalf("embeddedIPv4(%s) = %v, %v; want %v", tc.addr, got, ok, want)
				}
			}
			err := p.Check(addr)
			if tc.wantRange == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tc.addr, err)
				}
				return
			}
			if !errors.Is(err, ErrDestinationBlocked) {
				t.Fatalf("Check(%s) = %v, want errors.Is ErrDestinationBlocked", tc.addr, err)
			}
			// The message names the dialled address, the IPv4 address it carries and the range.
			for _, want := range []string{addr.String(), tc.v4, tc.wantRange} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Check(%s) message %q does not name %s", tc.addr, err, want)
				}
			}
		})
	}
}

func TestEgressCheckEmbeddedIPv4Defaults(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, false)
	checkEmbeddedCases(t, p, []embeddedCase{
		// NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
		{"64:ff9b::7f00:1", "127.0.0.1", "127.0.0.0/8"},
		{"64:ff9b::127.0.0.1", "127.0.0.1", "127.0.0.0/8"},
		{"64:ff9b::a9fe:a9fe", "169.254.169.254", "169.254.0.0/16"},
		{"64:ff9b::100.100.100.200", "100.100.100.200", "100.100.100.200/32"},
		{"64:ff9b::", "0.0.0.0", "0.0.0.0/8"},
		// Local-use NAT64 64:ff9b:1::/48 (RFC 8215), read as a /96 embedding.
		{"64:ff9b:1::7f00:1", "127.0.0.1", "127.0.0.0/8"},
		{"64:ff9b:1:abcd:0:1:a9fe:a9fe", "169.254.169.254", "169.254.0.0/16"},
		// 6to4 2002::/16 (RFC 3056): bits 16 to 47.
		{"2002:a9fe:a9fe::", "169.254.169.254", "169.254.0.0/16"},
		{"2002:a9fe:a9fe:1:2:3:4:5", "169.254.169.254", "169.254.0.0/16"},
		{"2002:7f00:1::1", "127.0.0.1", "127.0.0.0/8"},
		{"2002::", "0.0.0.0", "0.0.0.0/8"},
		// IPv4-compatible ::/96 (deprecated, RFC 4291).
		{"::127.0.0.1", "127.0.0.1", "127.0.0.0/8"},
		{"::a9fe:a9fe", "169.254.169.254", "169.254.0.0/16"},
		{"::0.0.0.2", "0.0.0.2", "0.0.0.0/8"},
		// SIIT IPv4-translated ::ffff:0:0:0/96 (RFC 2765).
		{"::ffff:0:127.0.0.1", "127.0.0.1", "127.0.0.0/8"},
		{"::ffff:0:a9fe:a9fe", "169.254.169.254", "169.254.0.0/16"},

		// Public IPv4 addresses behind a transition form stay reachable: an IPv6-only cluster with DNS64
		// dials 64:ff9b::<public IPv4> for every IPv4-only receiver.
		{"64:ff9b::808:808", "8.8.8.8", ""},
		{"64:ff9b:1::808:808", "8.8.8.8", ""},
		{"2002:808:808::1", "8.8.8.8", ""},
		{"::8.8.8.8", "8.8.8.8", ""},
		{"::ffff:0:8.8.8.8", "8.8.8.8", ""},
		// Private ranges are only blocked with --block-private-networks.
		{"64:ff9b::a00:1", "10.0.0.1", ""},
		// Near misses: not a transition prefix, so the trailing bits mean nothing.
		{"64:ff9b:0:0:0:1:7f00:1", "", ""}, // inside 64:ff9b::/64 but outside the /96
		{"64:ff9b:2::7f00:1", "", ""},      // outside the local-use /48
		{"2003:7f00:1::", "", ""},
		{"::1:0:7f00:1", "", ""},
		{"::fffe:0:7f00:1", "", ""},
		{"2001:db8::7f00:1", "", ""},
	})

	// :: and ::1 keep their own ranges; they are not read as IPv4-compatible 0.0.0.0 and 0.0.0.1.
	checkEgressCases(t, p, []egressCase{{"::", "::/128"}, {"::1", "::1/128"}})
	for _, a := range []string{"::", "::1", "::ffff:127.0.0.1", "127.0.0.1", "2001:db8::1"} {
		if v4, form, ok := embeddedIPv4(netip.MustParseAddr(a)); ok {
			t.Errorf("embeddedIPv4(%s) = %v (%s), want none", a, v4, form)
		}
	}
}

func TestEgressCheckEmbeddedIPv4BlockPrivate(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, true)
	checkEmbeddedCases(t, p, []embeddedCase{
		{"64:ff9b::a00:1", "10.0.0.1", "10.0.0.0/8"},
		{"64:ff9b:1::c0a8:101", "192.168.1.1", "192.168.0.0/16"},
		{"2002:ac14:1::", "172.20.0.1", "172.16.0.0/12"},
		{"::100.64.0.1", "100.64.0.1", "100.64.0.0/10"},
		{"::ffff:0:10.1.2.3", "10.1.2.3", "10.0.0.0/8"},
		{"64:ff9b::808:808", "8.8.8.8", ""},
	})
}

func TestEgressCheckEmbeddedIPv4Allowed(t *testing.T) {
	// An allowed IPv4 range allows the IPv6 forms of its addresses, as it does the IPv4-mapped form.
	p := mustEgressPolicy(t, nil, []string{"127.0.0.0/8"}, false)
	checkEmbeddedCases(t, p, []embeddedCase{
		{"64:ff9b::7f00:1", "127.0.0.1", ""},
		{"64:ff9b:1::7f00:1", "127.0.0.1", ""},
		{"2002:7f00:1::", "127.0.0.1", ""},
		{"::127.0.0.1", "127.0.0.1", ""},
		{"::ffff:0:127.0.0.1", "127.0.0.1", ""},
		// Only the listed range is opened.
		{"64:ff9b::a9fe:a9fe", "169.254.169.254", "169.254.0.0/16"},
		{"2002:a9fe:a9fe::", "169.254.169.254", "169.254.0.0/16"},
	})

	// A custom IPv4 block list applies to the IPv6 forms as well.
	p = mustEgressPolicy(t, []string{"8.8.8.0/24"}, nil, false)
	checkEmbeddedCases(t, p, []embeddedCase{
		{"64:ff9b::808:808", "8.8.8.8", "8.8.8.0/24"},
		{"2002:808:804::", "8.8.8.4", "8.8.8.0/24"},
		{"64:ff9b::7f00:1", "127.0.0.1", ""},
	})

	// A block list that names the IPv6 prefix itself names that prefix, and an allowed IPv4 range opens
	// the addresses it covers, as it does for IPv4-mapped addresses.
	p = mustEgressPolicy(t, []string{"64:ff9b::/96", "::ffff:0:0/96"}, []string{"8.8.8.0/24"}, false)
	checkEgressCases(t, p, []egressCase{
		{"64:ff9b::101:101", "64:ff9b::/96"},
		{"::ffff:1.1.1.1", "::ffff:0.0.0.0/96"},
		{"64:ff9b::808:808", ""},
		{"::ffff:8.8.8.8", ""},
	})
}

func TestEgressEmbeddedIPv4AtDialTime(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, false)
	for _, address := range []string{"[64:ff9b::7f00:1]:80", "[2002:a9fe:a9fe::]:80", "[::ffff:0:7f00:1]:443"} {
		if err := p.control(context.Background(), "tcp6", address, nil); !errors.Is(err, ErrDestinationBlocked) {
			t.Errorf("control(%s) = %v, want blocked", address, err)
		}
	}
	if err := p.control(context.Background(), "tcp6", "[64:ff9b::808:808]:443", nil); err != nil {
		t.Errorf("control([64:ff9b::808:808]:443) = %v, want nil", err)
	}
}

// FuzzEgressEmbeddedIPv4 checks that every IPv6 transition form of an IPv4 address gets the same
// verdict as the address itself.
func FuzzEgressEmbeddedIPv4(f *testing.F) {
	for _, seed := range []string{"127.0.0.1", "169.254.169.254", "0.0.0.0", "0.0.0.1", "10.1.2.3", "8.8.8.8", "100.100.100.200"} {
		b := netip.MustParseAddr(seed).As4()
		f.Add(b[0], b[1], b[2], b[3])
	}
	policies := []*EgressPolicy{
		mustEgressPolicy(f, nil, nil, false),
		mustEgressPolicy(f, nil, nil, true),
		mustEgressPolicy(f, nil, []string{"127.0.0.0/8", "10.1.0.0/16"}, true),
		mustEgressPolicy(f, []string{"8.8.8.0/24"}, nil, false),
	}
	f.Fuzz(func(t *testing.T, a, b, c, d byte) {
		v4 := netip.AddrFrom4([4]byte{a, b, c, d})
		forms := []string{
			"64:ff9b::" + v4.String(),
			"64:ff9b:1:ffff:ffff:ffff:" + v4.String(),
			"::ffff:0:" + v4.String(),
			netip.AddrFrom16([16]byte{0x20, 0x02, a, b, c, d, 0xde, 0xad, 15: 1}).String(),
		}
		if v4.Compare(netip.MustParseAddr("0.0.0.1")) > 0 {
			forms = append(forms, "::"+v4.String()) // :: and ::1 are not IPv4-compatible forms
		}
		for _, p := range policies {
			want := p.Check(v4) == nil
			for _, form := range forms {
				addr := netip.MustParseAddr(form)
				if got, _, ok := embeddedIPv4(addr); !ok || got != v4 {
					t.Fatalf("embeddedIPv4(%s) = %v, %v; want %v", addr, got, ok, v4)
				}
				if got := p.Check(addr) == nil; got != want {
					t.Fatalf("Check(%s) allowed=%v but Check(%s) allowed=%v", addr, got, v4, want)
				}
			}
		}
	})
}

func TestNewEgressPolicyDoesNotMutateDefaults(t *testing.T) {
	defaults := slices.Clone(DefaultBlockedCIDRs)
	private := slices.Clone(PrivateCIDRs)
	for range 3 {
		mustEgressPolicy(t, nil, nil, true)
	}
	if !slices.Equal(DefaultBlockedCIDRs, defaults) || !slices.Equal(PrivateCIDRs, private) {
		t.Fatalf("NewEgressPolicy changed the package defaults: %q / %q", DefaultBlockedCIDRs, PrivateCIDRs)
	}
	// The default lists themselves parse.
	for _, list := range [][]string{DefaultBlockedCIDRs, PrivateCIDRs} {
		for _, c := range list {
			if _, err := netip.ParsePrefix(c); err != nil {
				t.Errorf("default CIDR %q: %v", c, err)
			}
		}
	}
}

func TestNewEgressPolicyInvalidCIDR(t *testing.T) {
	tests := []struct {
		name             string
		blocked, allowed []string
		bad, wantPrefix  string
	}{
		{"blocked garbage", []string{"127.0.0.0/8", "not-a-cidr"}, nil, "not-a-cidr", "blocked CIDRs"},
		{"blocked bare address", []string{"10.0.0.1"}, nil, "10.0.0.1", "blocked CIDRs"},
		{"blocked prefix too long", []string{"10.0.0.0/33"}, nil, "10.0.0.0/33", "blocked CIDRs"},
		{"allowed garbage", nil, []string{"300.0.0.0/8"}, "300.0.0.0/8", "allowed CIDRs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewEgressPolicy(tc.blocked, tc.allowed, nil, false)
			if err == nil {
				t.Fatalf("NewEgressPolicy = %+v, want error", p)
			}
			if p != nil {
				t.Errorf("policy = %+v alongside error, want nil", p)
			}
			if !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("error %q does not name %q", err, tc.bad)
			}
			if !strings.HasPrefix(err.Error(), tc.wantPrefix) {
				t.Errorf("error %q, want prefix %q", err, tc.wantPrefix)
			}
		})
	}
}

func TestEgressNilPolicyAllowsEverything(t *testing.T) {
	var p *EgressPolicy
	for _, a := range []string{"127.0.0.1", "::1", "169.254.169.254", "0.0.0.0", "::", "fd00:ec2::254"} {
		if err := p.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("nil policy Check(%s) = %v", a, err)
		}
		if err := p.CheckHost(a); err != nil {
			t.Errorf("nil policy CheckHost(%s) = %v", a, err)
		}
	}
}

func TestEgressCheckHost(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, false)
	tests := []struct {
		host      string
		wantRange string // "" = nil error
	}{
		{"127.0.0.1", "127.0.0.0/8"},
		{"169.254.169.254", "169.254.0.0/16"},
		{"[::1]", "::1/128"},
		{"::1", "::1/128"},
		{"[fd00:ec2::254]", "fd00:ec2::254/128"},
		{"[::ffff:127.0.0.1]", "127.0.0.0/8"},
		{"[fe80::1%eth0]", "fe80::/10"},
		{"[fe80::1%25eth0]", "fe80::/10"},        // a zone is ignored, whatever its spelling
		{"[64:ff9b::7f00:1]", "127.0.0.0/8"},     // NAT64 form of 127.0.0.1
		{"[2002:a9fe:a9fe::]", "169.254.0.0/16"}, // 6to4 form of 169.254.169.254
		{"[64:ff9b::808:808]", ""},               // NAT64 form of 8.8.8.8
		{"8.8.8.8", ""},
		{"[2001:db8::1]", ""},
		// Host names are only checked after resolution, at dial time.
		{"localhost", ""},
		{"metadata.google.internal", ""},
		{"example.com", ""},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			err := p.CheckHost(tc.host)
			if tc.wantRange == "" {
				if err != nil {
					t.Fatalf("CheckHost(%q) = %v, want nil", tc.host, err)
				}
				return
			}
			if !errors.Is(err, ErrDestinationBlocked) {
				t.Fatalf("CheckHost(%q) = %v, want ErrDestinationBlocked", tc.host, err)
			}
			if !strings.Contains(err.Error(), tc.wantRange) {
				t.Errorf("CheckHost(%q) = %q, want it to name %s", tc.host, err, tc.wantRange)
			}
		})
	}
}

// countingServer is a plain HTTP test server on 127.0.0.1 that counts the requests it handles.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// loopbackHostName is the host name of TestSendEgressPolicy's URLs: useLoopbackDNS resolves it to the
// loopback addresses, so the test does not depend on how the machine resolves "localhost".
const loopbackHostName = "hook.egress.test"

// useLoopbackDNS makes the default resolver, which the Sender's dialler uses, ask a DNS server of the
// test that answers loopbackHostName with 127.0.0.1 (A) and ::1 (AAAA) and any other name with NXDOMAIN.
func useLoopbackDNS(t *testing.T) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer := answerLoopbackQuery(buf[:n]); answer != nil {
				_, _ = conn.WriteTo(answer, from)
			}
		}
	}()
	saved := net.DefaultResolver
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", conn.LocalAddr().String())
	}}
	t.Cleanup(func() { net.DefaultResolver = saved })
}

// answerLoopbackQuery answers a DNS query of one question (RFC 1035 section 4), or returns nil for a
// message it cannot read.
func answerLoopbackQuery(query []byte) []byte {
	const headerLen, typeA, typeAAAA, classIN, nxdomain = 12, 1, 28, 1, 3
	if len(query) < headerLen {
		return nil
	}
	end := headerLen
	var labels []string
	for end < len(query) && query[end] != 0 {
		next := end + 1 + int(query[end])
		if next > len(query) {
			return nil
		}
		labels = append(labels, string(query[end+1:next]))
		end = next
	}
	end += 1 + 4 // the root label, then QTYPE and QCLASS
	if end > len(query) {
		return nil
	}
	known := strings.EqualFold(strings.Join(labels, "."), loopbackHostName)
	qtype, qclass := binary.BigEndian.Uint16(query[end-4:]), binary.BigEndian.Uint16(query[end-2:])
	var rdata []byte
	switch {
	case known && qclass == classIN && qtype == typeA:
		rdata = net.IPv4(127, 0, 0, 1).To4()
	case known && qclass == classIN && qtype == typeAAAA:
		rdata = net.IPv6loopback
	}

	// The query's id and question, flags QR, RD and RA, and no authority or additional records (the
	// query's EDNS0 record is dropped).
	msg := append([]byte(nil), query[:end]...)
	flags := uint16(0x8180)
	if !known {
		flags |= nxdomain
	}
	binary.BigEndian.PutUint16(msg[2:], flags)
	binary.BigEndian.PutUint16(msg[4:], 1)
	binary.BigEndian.PutUint16(msg[6:], 0)
	binary.BigEndian.PutUint16(msg[8:], 0)
	binary.BigEndian.PutUint16(msg[10:], 0)
	if rdata == nil {
		return msg
	}
	binary.BigEndian.PutUint16(msg[6:], 1)
	// The answer: the question's name by a pointer to it, TYPE, CLASS, a TTL of 60 s, RDLENGTH, the address.
	msg = binary.BigEndian.AppendUint16(msg, 0xc000|headerLen)
	msg = binary.BigEndian.AppendUint16(msg, qtype)
	msg = binary.BigEndian.AppendUint16(msg, classIN)
	msg = binary.BigEndian.AppendUint32(msg, 60)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(rdata)))
	return append(msg, rdata...)
}

func TestSendEgressPolicy(t *testing.T) {
	srv, hits := countingServer(t)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.Hostname(), "127.") {
		t.Skipf("httptest server is on %s, not IPv4 loopback", u.Hostname())
	}
	useLoopbackDNS(t)
	hostNameURL := "http://" + net.JoinHostPort(loopbackHostName, u.Port()) + "/"

	defaultPolicy := mustEgressPolicy(t, nil, nil, false)
	allowLoopback := mustEgressPolicy(t, nil, []string{"127.0.0.0/8"}, false)

	tests := []struct {
		name          string
		policy        *EgressPolicy
		url           string
		wantBlocked   bool
		wantErrSubs   []string
		wantAnyErrSub []string // at least one must be present
	}{
		{name: "IP literal blocked", policy: defaultPolicy, url: srv.URL + "/hook?token=t0k3n", wantBlocked: true,
			wantErrSubs: []string{"127.0.0.1", "127.0.0.0/8", ErrDestinationBlocked.Error()}},
		// The URL names no IP: only a check on the resolved, dialled address can refuse it.
		{name: "host name resolving to loopback blocked", policy: defaultPolicy, url: hostNameURL, wantBlocked: true,
			wantErrSubs:   []string{ErrDestinationBlocked.Error()},
			wantAnyErrSub: []string{"127.0.0.1 is in 127.0.0.0/8", "::1 is in ::1/128"}},
		{name: "IP literal allowed by --allowed-cidrs", policy: allowLoopback, url: srv.URL},
		// ::1 stays blocked (and nothing listens there), 127.0.0.1 is allowed: the dialler falls back to it.
		{name: "host name allowed by --allowed-cidrs", policy: allowLoopback, url: hostNameURL},
		{name: "control: no policy", policy: nil, url: srv.URL},
		{name: "control: no policy via host name", policy: nil, url: hostNameURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			if tc.policy != nil {
				opts = append(opts, WithEgressPolicy(tc.policy))
			}
			before := hits.Load()
			res := NewSender(opts...).Send(context.Background(), Request{URL: tc.url, Body: []byte(`{}`), ID: "id", Timeout: 5 * time.Second})
			handled := hits.Load() - before

			if !tc.wantBlocked {
				if !res.Success || res.StatusCode != http.StatusOK || res.Blocked || res.Error != "" {
					t.Fatalf("result = %+v, want 200 success", res)
				}
				if handled != 1 {
					t.Fatalf("handler called %d times, want 1", handled)
				}
				return
			}
			if !res.Blocked || res.Success || res.StatusCode != 0 {
				t.Fatalf("result = %+v, want Blocked, no success, no status", res)
			}
			if handled != 0 {
				t.Fatalf("handler called %d times: the blocked destination was reached", handled)
			}
			for _, sub := range tc.wantErrSubs {
				if !strings.Contains(res.Error, sub) {
					t.Errorf("Error = %q, want it to contain %q", res.Error, sub)
				}
			}
			if len(tc.wantAnyErrSub) > 0 && !slices.ContainsFunc(tc.wantAnyErrSub, func(s string) bool { return strings.Contains(res.Error, s) }) {
				t.Errorf("Error = %q, want one of %q", res.Error, tc.wantAnyErrSub)
			}
			if strings.Contains(res.Error, "t0k3n") {
				t.Errorf("Error = %q leaks the URL query", res.Error)
			}
		})
	}
}

func TestEgressControlUnparsableAddress(t *testing.T) {
	p := mustEgressPolicy(t, nil, nil, false)
	if err := p.control(context.Background(), "tcp", "127.0.0.1:80", nil); !errors.Is(err, ErrDestinationBlocked) {
		t.Errorf("control(127.0.0.1:80) = %v, want blocked", err)
	}
	if err := p.control(context.Background(), "tcp6", "[::1]:443", nil); !errors.Is(err, ErrDestinationBlocked) {
		t.Errorf("control([::1]:443) = %v, want blocked", err)
	}
	if err := p.control(context.Background(), "tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("control(8.8.8.8:443) = %v, want nil", err)
	}
	// Fails closed on an address it cannot interpret.
	if err := p.control(context.Background(), "tcp", "not-an-ip:80", nil); !errors.Is(err, ErrDestinationBlocked) {
		t.Errorf("control(not-an-ip:80) = %v, want blocked", err)
	}
	if err := p.control(context.Background(), "tcp", "no-port", nil); err == nil {
		t.Errorf("control(no-port) = nil, want an error")
	}
}

// validateURLSeeds are the table cases of TestValidateURL, reused as fuzz seeds.
var validateURLSeeds = []struct {
	name         string
	raw          string
	requireHTTPS bool
	wantErr      bool
	wantInsecure bool
}{
	{name: "http", raw: "http://example.com/hook"},
	{name: "https", raw: "https://example.com/hook"},
	{name: "https with port, path, query", raw: "https://example.com:8443/a/b?x=1#f"},
	{name: "https required and used", raw: "https://example.com/", requireHTTPS: true},
	{name: "IPv6 literal", raw: "http://[2001:db8::1]:8080/"},
	{name: "user info allowed", raw: "http://user:pass@host/"},
	{name: "upper-case scheme", raw: "HTTPS://example.com/"},
	{name: "2048 characters", raw: "https://example.com/" + strings.Repeat("a", 2048-len("https://example.com/"))},
	{name: "empty", raw: "", wantErr: true},
	{name: "2049 characters", raw: "https://example.com/" + strings.Repeat("a", 2049-len("https://example.com/")), wantErr: true},
	{name: "relative", raw: "/relative", wantErr: true},
	{name: "ftp", raw: "ftp://x", wantErr: true},
	{name: "no host", raw: "https://", wantErr: true},
	{name: "port only", raw: "https://:443/", wantErr: true},
	{name: "not a url", raw: "not a url", wantErr: true},
	{name: "scheme-relative", raw: "//example.com/", wantErr: true},
	{name: "opaque", raw: "http:example.com", wantErr: true},
	{name: "unparsable", raw: "http://[::1/", wantErr: true},
	{name: "control character", raw: "http://example.com/\n", wantErr: true},
	{name: "javascript", raw: "javascript:alert(1)", wantErr: true},
	{name: "http when https required", raw: "http://example.com/", requireHTTPS: true, wantErr: true, wantInsecure: true},
	{name: "http with secrets when https required", raw: "http://user:s3cr3t@h/?token=t0k3n", requireHTTPS: true, wantErr: true, wantInsecure: true},
	{name: "ftp when https required", raw: "ftp://user:s3cr3t@h/?token=t0k3n", requireHTTPS: true, wantErr: true},
}

func TestValidateURL(t *testing.T) {
	for _, tc := range validateURLSeeds {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateURL(tc.raw, tc.requireHTTPS)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ValidateURL(%q, %v) = %v, wantErr %v", tc.raw, tc.requireHTTPS, err, tc.wantErr)
			}
			if err == nil {
				return
			}
			if got := errors.Is(err, ErrInsecureURL); got != tc.wantInsecure {
				t.Errorf("errors.Is(%v, ErrInsecureURL) = %v, want %v", err, got, tc.wantInsecure)
			}
			for _, leak := range []string{"s3cr3t", "t0k3n", "user:", "example.com"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q echoes the URL (%q)", err, leak)
				}
			}
		})
	}
}

func FuzzValidateURL(f *testing.F) {
	for _, tc := range validateURLSeeds {
		f.Add(tc.raw, tc.requireHTTPS)
	}
	f.Fuzz(func(t *testing.T, raw string, requireHTTPS bool) {
		err := ValidateURL(raw, requireHTTPS)
		if err != nil {
			if errors.Is(err, ErrInsecureURL) && !requireHTTPS {
				t.Fatalf("ValidateURL(%q, false) = ErrInsecureURL", raw)
			}
			// The fixed messages hold neither '@' nor '?': a URL with user information or a query that
			// shows up in the message was echoed.
			if strings.ContainsAny(raw, "@?") && strings.Contains(err.Error(), raw) {
				t.Fatalf("ValidateURL(%q) error %q echoes the URL", raw, err)
			}
			return
		}
		if len(raw) == 0 || len(raw) > 2048 {
			t.Fatalf("ValidateURL accepted a %d-byte URL", len(raw))
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("ValidateURL(%q) = nil but url.Parse fails: %v", raw, perr)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("ValidateURL(%q) = nil with scheme %q", raw, u.Scheme)
		}
		if u.Hostname() == "" {
			t.Fatalf("ValidateURL(%q) = nil with no host", raw)
		}
		if requireHTTPS && u.Scheme != "https" {
			t.Fatalf("ValidateURL(%q, true) = nil with scheme %q", raw, u.Scheme)
		}
		// An accepted URL can be sent: net/http builds a request from it.
		if _, rerr := http.NewRequest(http.MethodPost, raw, nil); rerr != nil {
			t.Fatalf("ValidateURL(%q) = nil but http.NewRequest fails: %v", raw, rerr)
		}
	})
}
