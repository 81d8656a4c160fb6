package console

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
)

// The handler tests run against a real API server (envtest), so that the field and label selectors,
// the paging and RBAC refusals are the API server's own.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cluster, err = localcluster.Start(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	return m.Run()
}

// consoleAddr is the address the test consoles pretend to listen on; requests go to the handler directly.
var consoleAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 43117}

const consoleHost = "127.0.0.1:43117"

// newConsole returns a console of the namespace acting with c (the administrator when nil).
func newConsole(t *testing.T, namespace string, c client.Client) *Server {
	t.Helper()
	if c == nil {
		c = cluster.Client
	}
	s, err := New(Options{Client: c, Namespace: namespace}, consoleAddr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request sends one request to the console; with session it carries the access cookie, as a browser
// does after the first visit.
func request(t *testing.T, s *Server, method, target string, form url.Values, session bool, edit ...func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.Host = consoleHost
	if session {
		req.AddCookie(&http.Cookie{Name: s.cookieName, Value: s.token})
	}
	for _, e := range edit {
		e(req)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

func get(t *testing.T, s *Server, target string) *httptest.ResponseRecorder {
	t.Helper()
	return request(t, s, http.MethodGet, target, nil, true)
}

// post sends a form from the console's own page: the CSRF token and the console's Origin.
func post(t *testing.T, s *Server, target string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set(CSRFField, s.csrf)
	return request(t, s, http.MethodPost, target, form, true, func(r *http.Request) {
		r.Header.Set("Origin", "http://"+consoleHost)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
}

func expectStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d; body:\n%s", w.Code, want, w.Body.String())
	}
}

func expectBody(t *testing.T, w *httptest.ResponseRecorder, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("body lacks %q:\n%s", want, w.Body.String())
		}
	}
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "console-"}}
	if err := cluster.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// createEndpoint creates an endpoint and gives it a status as the operator would.
func createEndpoint(t *testing.T, ns, name string, status webhooksv1alpha1.WebhookEndpointStatus) *webhooksv1alpha1.WebhookEndpoint {
	t.Helper()
	ep := &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: webhooksv1alpha1.WebhookEndpointSpec{
			URL:       "https://user:pass@receiver.example/hook?key=abc",
			SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "signing"},
		},
	}
	ctx := context.Background()
	if err := cluster.Client.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	ep.Status = status
	if err := cluster.Client.Status().Update(ctx, ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

// createEvent creates an event, edits it with spec before, and gives it the status from status after.
func createEvent(t *testing.T, ns, name string, spec func(*webhooksv1alpha1.DocumentEvent),
	status func(*webhooksv1alpha1.DocumentEvent)) *webhooksv1alpha1.DocumentEvent {
	t.Helper()
	ev := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       webhooksv1alpha1.DocumentEventSpec{DocumentID: "doc_" + name},
	}
	if spec != nil {
		spec(ev)
	}
	ctx := context.Background()
	if err := cluster.Client.Create(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		status(ev)
		if err := cluster.Client.Status().Update(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	return ev
}

// failedDelivery is a delivery to endpoint that used up its attempts.
func failedDelivery(endpoint, id, lastError string) webhooksv1alpha1.EndpointDelivery {
	at := metav1.NewMicroTime(time.Now().Add(-time.Minute))
	return webhooksv1alpha1.EndpointDelivery{
		Endpoint: endpoint, DeliveryID: id, Phase: webhooksv1alpha1.DeliveryFailed,
		Reason: webhooksv1alpha1.AttemptsExhaustedReason, Attempts: 3, LastAttemptTime: &at,
		LastStatusCode: 500, LastError: lastError,
	}
}
