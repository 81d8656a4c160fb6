package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// receivedRequest is one request as an httptest receiver saw it.
type receivedRequest struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a webhook receiver whose answer to the n-th request (0-based) is chosen by respond.
// A negative answer makes it hang until the test ends, which the sender sees as a timeout.
type receiver struct {
	*httptest.Server
	respond func(n int) int

	count    atomic.Int32
	mu       sync.Mutex
	requests []receivedRequest
	release  chan struct{}
}

func newReceiver(respond func(n int) int) *receiver {
	return newReceiverOn("127.0.0.1:0", respond)
}

// newReceiverOn listens on address, for example 127.0.0.3:0, which the suite declares private.
func newReceiverOn(address string, respond func(n int) int) *receiver {
	listener, err := net.Listen("tcp", address)
	Expect(err).NotTo(HaveOccurred())
	r := &receiver{respond: respond, release: make(chan struct{})}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		n := int(r.count.Add(1)) - 1
		r.mu.Lock()
		r.requests = append(r.requests, receivedRequest{at: time.Now(), header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		code := r.respond(n)
		if code < 0 {
			select {
			case <-r.release:
			case <-req.Context().Done():
			}
			return
		}
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"received": %t}`, code < 300)
	}))
	r.Listener = listener
	r.Start()
	DeferCleanup(func() {
		close(r.release)
		r.Close()
	})
	return r
}

func always(code int) func(int) int { return func(int) int { return code } }

func (r *receiver) received() []receivedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedRequest(nil), r.requests...)
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "whtest-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// secretVersionInManagerCache reads the resourceVersion of the Secret's metadata as the manager's cache
// holds it, which is what tells the operator that a Secret changed.
func secretVersionInManagerCache(secret *corev1.Secret) func(Gomega) string {
	return func(g Gomega) string {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		g.Expect(managerCache.Get(ctx, client.ObjectKeyFromObject(secret), meta)).To(Succeed())
		return meta.ResourceVersion
	}
}

func newSecret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	Expect(k8sClient.Create(ctx, s)).To(Succeed())
	return s
}

// fastRetry keeps envtest runs short: 100ms doubling, a handful of attempts.
func fastRetry(maxAttempts int32) *webhooksv1alpha1.RetryPolicy {
	return &webhooksv1alpha1.RetryPolicy{
		MaxAttempts:     maxAttempts,
		InitialInterval: &metav1.Duration{Duration: 100 * time.Millisecond},
		MaxInterval:     &metav1.Duration{Duration: 2 * time.Second},
	}
}

func withRetry(maxAttempts int32, initial time.Duration) func(*webhooksv1alpha1.WebhookEndpoint) {
	return func(ep *webhooksv1alpha1.WebhookEndpoint) {
		ep.Spec.Retry = &webhooksv1alpha1.RetryPolicy{
			MaxAttempts:     maxAttempts,
			InitialInterval: &metav1.Duration{Duration: initial},
			MaxInterval:     &metav1.Duration{Duration: time.Minute},
		}
	}
}

// recordScheduledWaits polls the event's status and records, per failed attempt, the wait the
// controller scheduled before the next one (nextAttemptTime minus the end of the attempt). It reads the
// schedule from status, so it does not depend on how fast this machine runs.
func recordScheduledWaits(ev *webhooksv1alpha1.DocumentEvent, endpoint string) func() map[int32]time.Duration {
	var mu sync.Mutex
	waits := map[int32]time.Duration{}
	stop := make(chan struct{})
	DeferCleanup(func() { close(stop) })
	go func() {
		defer GinkgoRecover()
		ticker := time.NewTicker(10 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			got := &webhooksv1alpha1.DocumentEvent{}
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(ev), got); err != nil {
				continue
			}
			d := got.GetDelivery(endpoint)
			if d == nil || d.Phase != webhooksv1alpha1.DeliveryRetrying || d.NextAttemptTime == nil || d.LastAttemptTime == nil {
				continue
			}
			end := d.LastAttemptTime.Add(d.Duration.Duration)
			mu.Lock()
			waits[d.Attempts] = d.NextAttemptTime.Sub(end)
			mu.Unlock()
		}
	}()
	return func() map[int32]time.Duration {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[int32]time.Duration, len(waits))
		for k, v := range waits {
			out[k] = v
		}
		return out
	}
}

func endpointObject(ns, name, url string, mutate ...func(*webhooksv1alpha1.WebhookEndpoint)) *webhooksv1alpha1.WebhookEndpoint {
	ep := &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       webhooksv1alpha1.WebhookEndpointSpec{URL: url, Retry: fastRetry(5)},
	}
	for _, m := range mutate {
		m(ep)
	}
	return ep
}

func newEndpoint(ns, name, url string, mutate ...func(*webhooksv1alpha1.WebhookEndpoint)) *webhooksv1alpha1.WebhookEndpoint {
	ep := endpointObject(ns, name, url, mutate...)
	Expect(k8sClient.Create(ctx, ep)).To(Succeed())
	return ep
}

func withSecret(name string) func(*webhooksv1alpha1.WebhookEndpoint) {
	return func(ep *webhooksv1alpha1.WebhookEndpoint) {
		ep.Spec.SecretRef = &webhooksv1alpha1.SecretKeyReference{Name: name}
	}
}

func eventObject(ns, name string, mutate ...func(*webhooksv1alpha1.DocumentEvent)) *webhooksv1alpha1.DocumentEvent {
	ev := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: webhooksv1alpha1.DocumentEventSpec{
			DocumentID: "doc_" + name,
			DocumentStatus: webhooksv1alpha1.DocumentStatus{
				DocType:   ptr.To("INVOICE"),
				CreatedAt: "2024-01-15T10:30:00Z",
				UpdatedAt: "2024-01-15T10:35:00.123Z",
			},
		},
	}
	for _, m := range mutate {
		m(ev)
	}
	return ev
}

func newEvent(ns, name string, mutate ...func(*webhooksv1alpha1.DocumentEvent)) *webhooksv1alpha1.DocumentEvent {
	ev := eventObject(ns, name, mutate...)
	Expect(k8sClient.Create(ctx, ev)).To(Succeed())
	return ev
}

func getEvent(ev *webhooksv1alpha1.DocumentEvent) func(Gomega) *webhooksv1alpha1.DocumentEvent {
	return func(g Gomega) *webhooksv1alpha1.DocumentEvent {
		out := &webhooksv1alpha1.DocumentEvent{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ev), out)).To(Succeed())
		return out
	}
}

func getEndpoint(ep *webhooksv1alpha1.WebhookEndpoint) func(Gomega) *webhooksv1alpha1.WebhookEndpoint {
	return func(g Gomega) *webhooksv1alpha1.WebhookEndpoint {
		out := &webhooksv1alpha1.WebhookEndpoint{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ep), out)).To(Succeed())
		return out
	}
}

// eventNotes returns the notes of the Kubernetes Events with the given reason about the named object.
func eventNotes(ns, regarding, reason string) func(Gomega) []string {
	return func(g Gomega) []string {
		list := &eventsv1.EventList{}
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.Regarding.Name == regarding && e.Reason == reason {
				notes = append(notes, e.Note)
			}
		}
		return notes
	}
}

func havePhase(p webhooksv1alpha1.DocumentEventPhase) OmegaMatcher {
	return HaveField("Status.Phase", p)
}

func haveCondition(condType string, status metav1.ConditionStatus, reason string) OmegaMatcher {
	return HaveField("Status.Conditions", ContainElement(And(
		HaveField("Type", condType), HaveField("Status", status), HaveField("Reason", reason))))
}

// jsonObject returns {"<key>": "<n bytes>"}.
func jsonObject(key string, n int) *apiextensionsv1.JSON {
	return &apiextensionsv1.JSON{Raw: []byte(`{"` + key + `":"` + strings.Repeat("x", n) + `"}`)}
}

// testCA is a throwaway certificate authority for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(name string) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() []byte { return certPEM(ca.cert) }

// issue returns a leaf certificate and key, as PEM, for 127.0.0.1 (server) or as a client certificate.
func (ca *testCA) issue(name string, usage x509.ExtKeyUsage) (certPEMBytes, keyPEMBytes []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// newTLSReceiver starts an https receiver with a certificate from ca; clientCA, when set, is required.
func newTLSReceiver(ca, clientCA *testCA, served *atomic.Int32) *httptest.Server {
	certPEMBytes, keyPEMBytes := ca.issue("receiver", x509.ExtKeyUsageServerAuth)
	pair, err := tls.X509KeyPair(certPEMBytes, keyPEMBytes)
	Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	srv.StartTLS()
	DeferCleanup(srv.Close)
	return srv
}
