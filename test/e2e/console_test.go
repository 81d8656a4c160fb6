package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// The console is tested in a real browser: headless Chromium from the distribution's packages, driven
// over the DevTools protocol by chromedp, against the built plugin (kubectl-webhook ui), the manager
// binary, the local API server and a receiver that verifies every signature.

// chromiumPath finds the browser; the test skips without one unless REQUIRE_BROWSER is set (CI sets it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("REQUIRE_BROWSER") != "" {
		t.Fatal("REQUIRE_BROWSER is set but no Chromium was found: apt-get install chromium")
	}
	t.Skip("no Chromium (apt-get install chromium); set REQUIRE_BROWSER=1 to make this a failure")
	return ""
}

// consoleReceiver verifies signatures and counts requests per X-Webhook-Id. While failing is set it
// answers 503; a document id containing "hostile" gets a 500 whose body (which the operator records in
// lastError) is markup.
type consoleReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	failing bool
	byID    map[string]int
	tests   int
}

const hostileMarkup = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`

func newConsoleReceiver(t *testing.T, secret string) *consoleReceiver {
	r := &consoleReceiver{byID: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := signature.Verify([]byte(secret), req.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Header.Get(delivery.HeaderTest) == "true" {
			r.tests++
			return
		}
		r.byID[req.Header.Get(signature.HeaderID)]++
		switch {
		case strings.Contains(string(body), "hostile"):
			http.Error(w, hostileMarkup, http.StatusInternalServerError)
		case r.failing:
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *consoleReceiver) setFailing(failing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing = failing
}

func (r *consoleReceiver) received(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

func (r *consoleReceiver) testsReceived() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tests
}

// startConsole builds the plugin, runs `kubectl-webhook ui -n ns --no-browser` as the administrator
// and returns the URL it printed.
func startConsole(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	plugin := filepath.Join(workDir, "kubectl-webhook")
	build := exec.CommandContext(ctx, "go", "build", "-o", plugin, "./cmd/kubectl-webhook")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubectl-webhook: %v\n%s", err, out)
	}
	admin, err := cluster.Env.AddUser(envtest.User{Name: "console-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	config, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	adminKubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := os.WriteFile(adminKubeconfig, config, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(plugin, "ui", "-n", ns, "--no-browser", "--port", "0", "--kubeconfig", adminKubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kubectl webhook ui after Ctrl-C: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("kubectl webhook ui did not stop within 10s of Ctrl-C")
		}
	})
	printed := regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/\?token=[A-Za-z0-9_-]+`)
	found := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if u := printed.FindString(scanner.Text()); u != "" {
				found <- u
			}
		}
	}()
	select {
	case u := <-found:
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl webhook ui printed no URL within 30s")
		return ""
	}
}

// newBrowser starts headless Chromium with a window the size of the screenshots.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(1360, 860),
		// Containers and CI run as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox,
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// waitFor evaluates a JavaScript condition in the page until it holds. Evaluations that fail while
// the page navigates (after a click on a form's button) are tried again.
func waitFor(t *testing.T, ctx context.Context, what, condition string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](condition))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("%s: not so after 90s (last error: %v)\npage text:\n%s", what, err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%v\npage text:\n%s", err, body)
	}
}

// screenshot writes docs/images/console-<name>.png when UPDATE_SCREENSHOTS is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "images", "console-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// consoleNamespace is the namespace of the demo, whose data the screenshots show.
const consoleNamespace = "demo"

// setupDemoLikeNamespace creates what `make demo` creates: two endpoints (one for bank statements
// only) sharing a signing Secret, both on the receiver.
func setupDemoLikeNamespace(t *testing.T, ns, secret, url string) {
	t.Helper()
	fast := &webhooksv1alpha1.RetryPolicy{MaxAttempts: 2, InitialInterval: &metav1.Duration{Duration: 200 * time.Millisecond}}
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webhook-signing-secret"},
			StringData: map[string]string{webhooksv1alpha1.DefaultSigningSecretKey: secret}},
		&webhooksv1alpha1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-receiver"},
			Spec: webhooksv1alpha1.WebhookEndpointSpec{URL: url + "/webhooks/orders",
				SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "webhook-signing-secret"},
				DocTypes:  []string{"INVOICE", "RECEIPT"}, Retry: fast},
		},
		&webhooksv1alpha1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "statements-receiver"},
			Spec: webhooksv1alpha1.WebhookEndpointSpec{URL: url + "/webhooks/statements",
				SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "webhook-signing-secret"},
				DocTypes:  []string{"BANK_STATEMENT"}, Retry: fast},
		},
	}
	for _, obj := range objects {
		if err := cluster.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
	}
}

func createDocument(t *testing.T, name, docType, description string) {
	t.Helper()
	ev := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: consoleNamespace, Name: name},
		Spec: webhooksv1alpha1.DocumentEventSpec{
			DocumentID:     strings.ReplaceAll(name, "-", "_"),
			DocumentStatus: webhooksv1alpha1.DocumentStatus{DocType: ptr.To(docType)},
			Document: &webhooksv1alpha1.DocumentSummary{Description: ptr.To(description),
				TotalAmount: ptr.To(webhooksv1alpha1.Decimal("1250.00")), DocumentDate: "2024-01-31"},
		},
	}
	if err := cluster.Client.Create(context.Background(), ev); err != nil {
		t.Fatalf("create event %s: %v", name, err)
	}
}

// waitPhase waits until the events have the phase and returns their delivery ids.
func waitPhase(t *testing.T, phase webhooksv1alpha1.DocumentEventPhase, names ...string) []string {
	t.Helper()
	var ids []string
	Eventually(func(g Gomega) {
		found := make([]string, 0, len(names))
		for _, name := range names {
			ev := &webhooksv1alpha1.DocumentEvent{}
			g.Expect(cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: consoleNamespace, Name: name}, ev)).To(Succeed())
			g.Expect(ev.Status.Phase).To(Equal(phase), name)
			for _, d := range ev.Status.Deliveries {
				found = append(found, d.DeliveryID)
			}
		}
		ids = found
	}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	return ids
}

func TestConsoleInBrowser(t *testing.T) {
	RegisterTestingT(t)
	ctx := newBrowser(t)
	const ns, secret = consoleNamespace, "console-signing-secret"
	recv := newConsoleReceiver(t, secret)
	setupDemoLikeNamespace(t, ns, secret, recv.URL)
	startManager(t, "console", fastLeaderElection...)

	createDocument(t, "doc-invoice-1042", "INVOICE", "Office chairs")
	createDocument(t, "doc-receipt-7", "RECEIPT", "Team lunch")
	createDocument(t, "doc-statement-2024-01", "BANK_STATEMENT", "January statement")
	waitPhase(t, webhooksv1alpha1.DocumentEventDelivered, "doc-invoice-1042", "doc-receipt-7", "doc-statement-2024-01")

	consoleURL := startConsole(t, ns)
	base := strings.Split(consoleURL, "?")[0]

	// The printed URL opens the endpoints page; the token is gone from the address bar.
	do(t, ctx, chromedp.Navigate(consoleURL), chromedp.WaitVisible(`#endpoints`))
	location, err := chromedp.Run(ctx, chromedp.Location())
	Expect(err).NotTo(HaveOccurred())
	Expect(location).To(Equal(base + "endpoints"))

	// Send test webhook: the endpoint page shows the receiver's 200 when the operator records it.
	do(t, ctx, chromedp.Click(`tr[data-endpoint="orders-receiver"] button`))
	waitFor(t, ctx, "the test result", `(() => { const s = document.querySelector("#test-result .test-status");
		return !document.querySelector("#test-waiting") && s !== null && s.textContent === "200"; })()`)
	Expect(recv.testsReceived()).To(Equal(1))

	// Three invoices fail while the receiver is down.
	recv.setFailing(true)
	failedNames := []string{"doc-invoice-1043", "doc-invoice-1044", "doc-invoice-1045"}
	for _, name := range failedNames {
		createDocument(t, name, "INVOICE", "Printer paper")
	}
	failedIDs := waitPhase(t, webhooksv1alpha1.DocumentEventFailed, failedNames...)
	Expect(failedIDs).To(HaveLen(3))
	for _, id := range failedIDs {
		Expect(recv.received(id)).To(Equal(2), "two attempts (retry.maxAttempts) of %s", id)
	}

	do(t, ctx, chromedp.Navigate(base+"endpoints"), chromedp.WaitVisible(`#endpoints`))
	waitFor(t, ctx, "the failed count", `document.querySelector('tr[data-endpoint="orders-receiver"] a.bad')?.textContent === "3"`)
	screenshot(t, ctx, "endpoints")
	do(t, ctx, chromedp.Navigate(base+"events"), chromedp.WaitVisible(`#events`))
	screenshot(t, ctx, "events")
	do(t, ctx, chromedp.Navigate(base+"namespaces/"+ns+"/events/doc-invoice-1043"), chromedp.WaitVisible(`#payload`))
	screenshot(t, ctx, "event")

	// Filter the failed events, Redeliver failed, confirm the count; the receiver, up again, gets
	// every failed delivery once more under the same X-Webhook-Id.
	recv.setFailing(false)
	do(t, ctx,
		chromedp.Navigate(base+"events"), chromedp.WaitVisible(`#filter`),
		chromedp.SetValue(`#filter select[name="phase"]`, "Failed"),
		chromedp.Click(`#filter button[type="submit"]`),
	)
	waitFor(t, ctx, "the filtered events", `new URLSearchParams(location.search).get("phase") === "Failed" && document.querySelectorAll("#events tbody tr").length === 3`)
	do(t, ctx, chromedp.Click(`#redeliver-failed`), chromedp.WaitVisible(`#confirm-count`))
	confirmText, err := chromedp.Run(ctx, chromedp.Text(`#confirm-count`))
	Expect(err).NotTo(HaveOccurred())
	Expect(confirmText).To(ContainSubstring("3 events"))
	do(t, ctx, chromedp.Click(`#confirm`))
	waitFor(t, ctx, "the redelivery notice", `document.body.innerText.includes("Redelivery of the failed deliveries requested for 3 events")`)
	Eventually(func(g Gomega) {
		for _, id := range failedIDs {
			g.Expect(recv.received(id)).To(Equal(3), "X-Webhook-Id %s: two failed attempts, then the redelivery", id)
		}
	}).WithTimeout(time.Minute).Should(Succeed())
	waitPhase(t, webhooksv1alpha1.DocumentEventDelivered, failedNames...)
	// The page follows by itself: the failed events leave the Failed filter.
	waitFor(t, ctx, "the live update", `document.querySelectorAll("#events tbody tr").length === 0 && /updated \d+s ago/.test(document.getElementById("updated").textContent)`)

	// A hostile event: markup in the payload and in the error the receiver answered with renders as
	// text, and runs nothing.
	createDocument(t, "doc-hostile", "INVOICE", "hostile "+hostileMarkup)
	waitPhase(t, webhooksv1alpha1.DocumentEventFailed, "doc-hostile")
	do(t, ctx, chromedp.Navigate(base+"namespaces/"+ns+"/events/doc-hostile"), chromedp.WaitVisible(`#payload`))
	payloadText, err := chromedp.Run(ctx, chromedp.Text(`#payload`))
	Expect(err).NotTo(HaveOccurred())
	// The body as the receiver gets it: the markup as JSON text (quotes escaped, no HTML escaping).
	Expect(payloadText).To(ContainSubstring(`"description":"hostile <script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">"`))
	errorText, err := chromedp.Run(ctx, chromedp.Text(`.delivery .error`))
	Expect(err).NotTo(HaveOccurred())
	Expect(errorText).To(ContainSubstring("<script>window.pwned=1</script>"))
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[string](`typeof window.pwned`))
	Expect(err).NotTo(HaveOccurred())
	Expect(pwned).To(Equal("undefined"), "markup from an object ran in the page")
	scripts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.scripts.length`))
	Expect(err).NotTo(HaveOccurred())
	Expect(scripts).To(Equal(1), "only the console's own script")

	// From the page, a POST with a wrong CSRF token is refused; a browser without the cookie is refused.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/namespaces/`+ns+`/events/doc-hostile/redeliver",
		{method: "POST", body: new URLSearchParams({csrf: "wrong"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	Expect(err).NotTo(HaveOccurred())
	Expect(status).To(Equal(http.StatusForbidden))
	ev := &webhooksv1alpha1.DocumentEvent{}
	Expect(cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "doc-hostile"}, ev)).To(Succeed())
	Expect(ev.Annotations).NotTo(HaveKey(webhooksv1alpha1.RedeliverRequestedAtAnnotation))

	stranger, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	do(t, stranger, chromedp.Navigate(base+"events"))
	text, err := chromedp.Run(stranger, chromedp.Text(`body`))
	Expect(err).NotTo(HaveOccurred())
	Expect(text).To(ContainSubstring("Unauthorized"))
	Expect(text).NotTo(ContainSubstring("doc-invoice"))
}
