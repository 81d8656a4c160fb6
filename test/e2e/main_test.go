// Package e2e runs the built manager binary as a separate process against a real API server, with only
// the generated RBAC: a signed delivery end to end, crash safety, leader hand-over and graceful shutdown.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"

	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/pkg/signature"
)

var (
	cluster    *localcluster.Cluster
	binary     string
	kubeconfig string
	workDir    string
)

// Short leases so that a killed leader is replaced within seconds.
var fastLeaderElection = []string{
	"--leader-elect",
	"--leader-election-lease-duration=3s",
	"--leader-election-renew-deadline=2s",
	"--leader-election-retry-period=500ms",
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if workDir, err = os.MkdirTemp("", "webhook-operator-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(workDir) }()
	if cluster, err = localcluster.Start(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	if binary, err = localcluster.BuildManager(ctx, root, workDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if kubeconfig, err = cluster.ManagerKubeconfig(ctx, workDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// startManager runs one manager process for the test, logging to a file that is printed if the test
// fails, and kills it at the end unless the test stopped it. It returns the log file's path.
func startManager(t *testing.T, name string, args ...string) (*localcluster.Manager, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := localcluster.StartManager(context.Background(), binary, kubeconfig, logFile, args...)
	if err != nil {
		t.Fatalf("start manager %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = m.Kill()
		_ = logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("manager %s log:\n%s", name, out)
		}
	})
	return m, logPath
}

// countingReceiver verifies every signature and counts requests per X-Webhook-Id.
type countingReceiver struct {
	*httptest.Server
	secret []byte
	delay  time.Duration

	mu       sync.Mutex
	byID     map[string]int
	rejected int
	inFlight chan struct{}
}

func newCountingReceiver(t *testing.T, secret string, delay time.Duration) *countingReceiver {
	r := &countingReceiver{secret: []byte(secret), delay: delay, byID: map[string]int{}, inFlight: make(chan struct{}, 1024)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		select {
		case r.inFlight <- struct{}{}:
		default:
		}
		time.Sleep(r.delay)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := signature.Verify(r.secret, req.Header, body); err != nil {
			r.rejected++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.byID[req.Header.Get(signature.HeaderID)]++
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *countingReceiver) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byID))
	for k, v := range r.byID {
		out[k] = v
	}
	return out
}

// rejectedCount is how many requests failed signature verification.
func (r *countingReceiver) rejectedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}

// setupTenant creates a namespace with a signing Secret and one endpoint pointing at url.
func setupTenant(t *testing.T, ns, secret, url string) {
	t.Helper()
	ctx := context.Background()
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signing"},
			StringData: map[string]string{"signingSecret": secret},
		},
		&webhooksv1alpha1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "receiver"},
			Spec: webhooksv1alpha1.WebhookEndpointSpec{
				URL:       url + "/webhook",
				SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "signing"},
				Timeout:   &metav1.Duration{Duration: 10 * time.Second},
			},
		},
	}
	for _, obj := range objects {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
	}
}

func createEvents(t *testing.T, ns, prefix string, n int) {
	t.Helper()
	for i := range n {
		ev := &webhooksv1alpha1.DocumentEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%04d", prefix, i)},
			Spec:       webhooksv1alpha1.DocumentEventSpec{DocumentID: fmt.Sprintf("doc_%s_%d", prefix, i)},
		}
		if err := cluster.Client.Create(context.Background(), ev); err != nil {
			t.Fatalf("create event: %v", err)
		}
	}
}

// deliveredIDs returns the delivery ids recorded Delivered in the namespace, and how many events are
// not Delivered yet.
func deliveredIDs(t *testing.T, ns string) (map[string]bool, int) {
	t.Helper()
	list := &webhooksv1alpha1.DocumentEventList{}
	if err := cluster.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	pending := 0
	for _, ev := range list.Items {
		if ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered {
			pending++
		}
		for _, d := range ev.Status.Deliveries {
			if d.Phase == webhooksv1alpha1.DeliveryDelivered {
				ids[d.DeliveryID] = true
			}
		}
	}
	return ids, pending
}

// waitAllDelivered polls until every event of the namespace is Delivered.
func waitAllDelivered(t *testing.T, ns string, timeout time.Duration) map[string]bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ids, pending := deliveredIDs(t, ns)
		if pending == 0 {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events in %s not Delivered after %s", pending, ns, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
