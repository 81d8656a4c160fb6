package delivery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// privateReceiver listens on 127.0.0.3, which the tests declare private: only loopback is ours here.
func privateReceiver(t *testing.T) *httptest.Server {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.3: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.Listener = listener
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestPrivateRangesAreRefusedAtDialTimeUnlessTheNamespaceIsAllowed(t *testing.T) {
	srv := privateReceiver(t)
	policy, err := NewEgressPolicy([]string{}, nil, []string{"127.0.0.3/32"}, true)
	if err != nil {
		t.Fatal(err)
	}
	policy.PrivateHint = "label the namespace"
	sender := NewSender(WithEgressPolicy(policy))
	send := func(allowPrivate bool) Result {
		return sender.Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`), ID: "whd_1",
			Timeout: 5 * time.Second, AllowPrivate: allowPrivate})
	}

	refused := send(false)
	if !refused.Blocked || refused.Class != ClassBlocked || !strings.Contains(refused.Error, "a private range; label the namespace") {
		t.Fatalf("without the namespace's permission: %+v, want refused at dial time with the hint", refused)
	}
	if allowed := send(true); !allowed.Success {
		t.Fatalf("with the namespace's permission: %+v, want delivered", allowed)
	}
	// The connection opened for the allowed namespace stays in its own pool.
	if again := send(false); !again.Blocked {
		t.Fatalf("after an allowed request: %+v, want still refused (no connection reused)", again)
	}
	if err := policy.AllowingPrivate().CheckHost("127.0.0.3"); err != nil {
		t.Fatalf("AllowingPrivate still refuses: %v", err)
	}
	if err := policy.CheckHost("127.0.0.3"); !errors.Is(err, ErrDestinationBlocked) {
		t.Fatalf("CheckHost = %v, want blocked", err)
	}
}

func TestPrivateRangesAreOpenWithBlockPrivateNetworksOff(t *testing.T) {
	policy, err := NewEgressPolicy(nil, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.CheckHost("10.1.2.3"); err != nil {
		t.Fatalf("--block-private-networks=false refuses 10.1.2.3: %v", err)
	}
	strict, err := NewEgressPolicy(nil, nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd00::1", "::ffff:10.0.0.1"} {
		if err := strict.CheckHost(host); !errors.Is(err, ErrDestinationBlocked) {
			t.Errorf("default policy lets %s through: %v", host, err)
		}
	}
}
