package delivery

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCert is a certificate with its key, parsed and PEM-encoded.
type testCert struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

func (c testCert) tlsCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// newTestCert issues a certificate from tmpl, signed by parent (self-signed when parent is nil).
func newTestCert(t testing.TB, tmpl *x509.Certificate, parent *testCert) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

func newTestCA(t testing.TB, name string) testCert {
	t.Helper()
	return newTestCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

// testPKI is the certificate set shared by the TLS tests.
type testPKI struct {
	serverCA, server, clientCA, client, otherCA testCert
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func getTestPKI(t testing.TB) testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		serverCA := newTestCA(t, "webhook test server CA")
		clientCA := newTestCA(t, "webhook test client CA")
		pki = testPKI{
			serverCA: serverCA,
			server: newTestCert(t, &x509.Certificate{
				Subject:     pkix.Name{CommonName: "receiver"},
				IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
				DNSNames:    []string{"localhost"},
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}, &serverCA),
			clientCA: clientCA,
			client: newTestCert(t, &x509.Certificate{
				Subject:     pkix.Name{CommonName: "webhook-operator.ns-ep"},
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}, &clientCA),
			// A CA that signed nothing we serve: trusting it must not make the server trusted.
			otherCA: newTestCA(t, "webhook test server CA"),
		}
	})
	return pki
}

// tlsReceiver is an httptest TLS server that counts new connections and records client certificate names.
type tlsReceiver struct {
	*httptest.Server
	newConns    atomic.Int32
	closedConns atomic.Int32
	requests    atomic.Int32
	mu          sync.Mutex
	peerCNs     []string
}

func (r *tlsReceiver) clientCNs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.peerCNs...)
}

// startTLSReceiver serves 200 over TLS with the test server certificate; requireClientCert turns on mTLS.
func startTLSReceiver(t *testing.T, requireClientCert bool) *tlsReceiver {
	t.Helper()
	p := getTestPKI(t)
	rcv := &tlsReceiver{}
	rcv.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rcv.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			rcv.mu.Lock()
			rcv.peerCNs = append(rcv.peerCNs, r.TLS.PeerCertificates[0].Subject.CommonName)
			rcv.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	}))
	rcv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server.tlsCertificate(t)}}
	if requireClientCert {
		pool := x509.NewCertPool()
		pool.AddCert(p.clientCA.cert)
		rcv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		rcv.TLS.ClientCAs = pool
	}
	rcv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			rcv.newConns.Add(1)
		case http.StateClosed:
			rcv.closedConns.Add(1)
		}
	}
	// Handshake failures are expected; keep them out of the test output.
	rcv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rcv.StartTLS()
	t.Cleanup(rcv.Close)
	return rcv
}

func sendTLS(s *Sender, url string, m *TLSMaterial) Result {
	return s.Send(context.Background(), Request{URL: url, Body: []byte(`{}`), ID: "id", Timeout: 5 * time.Second, TLS: m})
}

func wantTLSSuccess(t *testing.T, res Result) {
	t.Helper()
	if !res.Success || res.StatusCode != http.StatusOK || res.Error != "" {
		t.Fatalf("result = %+v, want 200 success", res)
	}
}

func wantTLSFailure(t *testing.T, res Result, anyOf ...string) {
	t.Helper()
	t.Logf("failure: %q", res.Error)
	if res.Success || res.StatusCode != 0 || res.Blocked {
		t.Fatalf("result = %+v, want a failure without status", res)
	}
	if !strings.HasPrefix(res.Error, "connection error") {
		t.Fatalf("Error = %q, want prefix %q", res.Error, "connection error")
	}
	for _, s := range anyOf {
		if strings.Contains(res.Error, s) {
			return
		}
	}
	if len(anyOf) > 0 {
		t.Fatalf("Error = %q, want one of %q", res.Error, anyOf)
	}
}

func TestSendTLSPrivateCA(t *testing.T) {
	p := getTestPKI(t)
	rcv := startTLSReceiver(t, false)
	s := NewSender()

	// Verification is on: the system roots do not know the test CA.
	res := sendTLS(s, rcv.URL, nil)
	wantTLSFailure(t, res, "certificate signed by unknown authority", "unknown authority")
	if !strings.Contains(res.Error, "certificate") {
		t.Errorf("Error = %q does not mention the certificate", res.Error)
	}

	// Some other CA does not help either.
	res = sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/other", Version: "1", CAPEM: p.otherCA.certPEM})
	wantTLSFailure(t, res, "certificate")

	res = sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/ep", Version: "1", CAPEM: p.serverCA.certPEM})
	wantTLSSuccess(t, res)

	// The private CA is the endpoint's own: the shared client still refuses the server.
	res = sendTLS(s, rcv.URL, nil)
	wantTLSFailure(t, res, "unknown authority")

	if n := rcv.requests.Load(); n != 1 {
		t.Fatalf("server handled %d requests, want 1 (only the verified one)", n)
	}
}

func TestSendTLSClientCertificate(t *testing.T) {
	p := getTestPKI(t)
	rcv := startTLSReceiver(t, true)
	s := NewSender()

	// TLS 1.3 reports the missing client certificate after the client's handshake, as an alert on read.
	res := sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/no-cert", Version: "1", CAPEM: p.serverCA.certPEM})
	wantTLSFailure(t, res)

	// A client certificate from a CA the server does not trust is refused too (crypto/tls does not even
	// offer it, since the server's CertificateRequest lists only the client CA).
	stranger := newTestCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "stranger"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &p.otherCA)
	res = sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/stranger", Version: "1", CAPEM: p.serverCA.certPEM, CertPEM: stranger.certPEM, KeyPEM: stranger.keyPEM})
	wantTLSFailure(t, res)

	if n := rcv.requests.Load(); n != 0 {
		t.Fatalf("server handled %d requests without a valid client certificate", n)
	}

	res = sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/ep", Version: "1", CAPEM: p.serverCA.certPEM, CertPEM: p.client.certPEM, KeyPEM: p.client.keyPEM})
	wantTLSSuccess(t, res)
	if got := rcv.clientCNs(); len(got) != 1 || got[0] != "webhook-operator.ns-ep" {
		t.Fatalf("server saw client certificates %q, want [webhook-operator.ns-ep]", got)
	}
}

func TestSendTLSRotation(t *testing.T) {
	p := getTestPKI(t)
	rcv := startTLSReceiver(t, true)
	s := NewSender()
	const owner = "ns/ep"
	material := func(version string, ca testCert) *TLSMaterial {
		return &TLSMaterial{Owner: owner, Version: version, CAPEM: ca.certPEM, CertPEM: p.client.certPEM, KeyPEM: p.client.keyPEM}
	}

	res := sendTLS(s, rcv.URL, material("1", p.otherCA))
	wantTLSFailure(t, res, "certificate")

	// Same owner and version: the cached (wrong) configuration is kept, even if the bytes changed.
	res = sendTLS(s, rcv.URL, material("1", p.serverCA))
	wantTLSFailure(t, res, "certificate")

	// A new version takes effect on the next attempt, with the same Sender.
	before := rcv.newConns.Load()
	for i := range 3 {
		res = sendTLS(s, rcv.URL, material("2", p.serverCA))
		if !res.Success {
			t.Fatalf("attempt %d with version 2: %+v", i, res)
		}
	}
	if n := rcv.newConns.Load() - before; n != 1 {
		t.Fatalf("3 attempts with unchanged material opened %d connections, want 1 (pool reused)", n)
	}

	// Rotating back to a bad CA takes effect too: new material, new pool, no reuse of the trusted connection.
	res = sendTLS(s, rcv.URL, material("3", p.otherCA))
	wantTLSFailure(t, res, "certificate")

	// Another owner with the same version string gets its own pool.
	before = rcv.newConns.Load()
	res = sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/ep2", Version: "2", CAPEM: p.serverCA.certPEM, CertPEM: p.client.certPEM, KeyPEM: p.client.keyPEM})
	wantTLSSuccess(t, res)
	if n := rcv.newConns.Load() - before; n != 1 {
		t.Fatalf("a second owner opened %d connections, want 1 of its own", n)
	}
}

func TestSendTLSInvalidMaterial(t *testing.T) {
	p := getTestPKI(t)
	rcv := startTLSReceiver(t, false)
	other := newTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "other"}}, &p.clientCA)

	tests := []struct {
		name string
		m    TLSMaterial
	}{
		{"CA garbage", TLSMaterial{CAPEM: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")}},
		{"CA not PEM", TLSMaterial{CAPEM: []byte("hello")}},
		{"CA holds a key", TLSMaterial{CAPEM: p.client.keyPEM}},
		{"certificate and key mismatched", TLSMaterial{CAPEM: p.serverCA.certPEM, CertPEM: p.client.certPEM, KeyPEM: other.keyPEM}},
		{"certificate without key", TLSMaterial{CAPEM: p.serverCA.certPEM, CertPEM: p.client.certPEM}},
		{"key without certificate", TLSMaterial{CAPEM: p.serverCA.certPEM, KeyPEM: p.client.keyPEM}},
		{"key and certificate swapped", TLSMaterial{CAPEM: p.serverCA.certPEM, CertPEM: p.client.keyPEM, KeyPEM: p.client.certPEM}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSender()
			m := tc.m
			m.Owner, m.Version = "ns/ep", "1"
			res := sendTLS(s, rcv.URL, &m)
			if res.Success || res.StatusCode != 0 {
				t.Fatalf("result = %+v, want failure", res)
			}
			if !strings.HasPrefix(res.Error, "invalid TLS configuration") {
				t.Fatalf("Error = %q, want prefix %q", res.Error, "invalid TLS configuration")
			}
			for _, pemBytes := range [][]byte{p.client.keyPEM, other.keyPEM} {
				for _, secret := range pemSecrets(t, pemBytes) {
					if strings.Contains(res.Error, secret) {
						t.Fatalf("Error = %q contains private key material", res.Error)
					}
				}
			}
			if strings.Contains(res.Error, "PRIVATE KEY") {
				t.Errorf("Error = %q quotes the key PEM", res.Error)
			}

			// A broken configuration is not cached: fixed material with the same version works at once.
			res = sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/ep", Version: "1", CAPEM: p.serverCA.certPEM})
			wantTLSSuccess(t, res)
		})
	}
	if n := rcv.requests.Load(); n != int32(len(tests)) {
		t.Fatalf("server handled %d requests, want %d (only the fixed ones)", n, len(tests))
	}
}

// pemSecrets returns fragments of a PEM key that must never appear in an error: each base64 line of the
// PEM, and every 16-character chunk of the key's base64 encoding.
func pemSecrets(t *testing.T, pemBytes []byte) []string {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("test key is not PEM")
	}
	b64 := base64.StdEncoding.EncodeToString(block.Bytes)
	var out []string
	for i := 0; i+16 <= len(b64); i += 16 {
		out = append(out, b64[i:i+16])
	}
	for _, line := range bytes.Split(pemBytes, []byte("\n")) {
		if len(line) >= 16 && !bytes.HasPrefix(line, []byte("-----")) {
			out = append(out, string(line))
		}
	}
	return out
}

func TestForgetTLS(t *testing.T) {
	p := getTestPKI(t)
	rcv := startTLSReceiver(t, false)
	s := NewSender()
	m := &TLSMaterial{Owner: "ns/ep", Version: "1", CAPEM: p.serverCA.certPEM}

	wantTLSSuccess(t, sendTLS(s, rcv.URL, m))
	wantTLSSuccess(t, sendTLS(s, rcv.URL, m))
	if n := rcv.newConns.Load(); n != 1 {
		t.Fatalf("two attempts opened %d connections, want 1", n)
	}

	s.ForgetTLS("ns/other") // unknown owner: no effect
	s.ForgetTLS("ns/ep")
	s.ForgetTLS("ns/ep") // idempotent

	// The idle connection was closed, not merely unreferenced.
	deadline := time.Now().Add(2 * time.Second)
	for rcv.closedConns.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := rcv.closedConns.Load(); n != 1 {
		t.Errorf("server saw %d closed connections after ForgetTLS, want 1: the idle connection was left open", n)
	}

	wantTLSSuccess(t, sendTLS(s, rcv.URL, m))
	if n := rcv.newConns.Load(); n != 2 {
		t.Fatalf("after ForgetTLS the same version opened %d connections in total, want 2 (a fresh pool)", n)
	}
}

func TestSendTLSEgressPolicy(t *testing.T) {
	p := getTestPKI(t)
	rcv := startTLSReceiver(t, false)
	s := NewSender(WithEgressPolicy(mustEgressPolicy(t, nil, nil, false)))

	// Endpoints with their own TLS material get their own transport: it must enforce the policy too.
	res := sendTLS(s, rcv.URL, &TLSMaterial{Owner: "ns/ep", Version: "1", CAPEM: p.serverCA.certPEM})
	if !res.Blocked || res.Success || res.StatusCode != 0 || !strings.Contains(res.Error, "127.0.0.0/8") {
		t.Fatalf("result = %+v, want blocked by 127.0.0.0/8", res)
	}
	if n := rcv.newConns.Load(); n != 0 {
		t.Fatalf("server accepted %d connections from a blocked sender", n)
	}
}
