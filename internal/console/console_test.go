package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/internal/payload"
	"github.com/1flow/webhook-operator/internal/routing"
)

func TestEveryAnswerCarriesTheSecurityHeaders(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	for name, w := range map[string]interface{ Header() http.Header }{
		"page":          get(t, s, "/endpoints"),
		"static":        get(t, s, "/static/console.js"),
		"without token": request(t, s, http.MethodGet, "/endpoints", nil, false),
	} {
		h := w.Header()
		if got := h.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s: Content-Security-Policy %q, want %q", name, got, ContentSecurityPolicy)
		}
		for header, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "same-origin", "Cache-Control": "no-store"} {
			if got := h.Get(header); got != want {
				t.Errorf("%s: %s %q, want %q", name, header, got, want)
			}
		}
	}
	if !strings.Contains(ContentSecurityPolicy, "script-src 'self'") || strings.Contains(ContentSecurityPolicy, "unsafe-inline") {
		t.Errorf("the policy must forbid inline script: %s", ContentSecurityPolicy)
	}
}

func TestAccessNeedsTheToken(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	expectStatus(t, request(t, s, http.MethodGet, "/endpoints", nil, false), http.StatusUnauthorized)
	expectStatus(t, request(t, s, http.MethodGet, "/static/console.css", nil, false), http.StatusUnauthorized)
	expectStatus(t, request(t, s, http.MethodGet, "/endpoints?token=wrong", nil, false), http.StatusUnauthorized)
	wrongCookie := request(t, s, http.MethodGet, "/endpoints", nil, false, func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: s.cookieName, Value: s.token[1:] + "x"})
	})
	expectStatus(t, wrongCookie, http.StatusUnauthorized)
	expectBody(t, wrongCookie, "open the URL that `kubectl webhook ui` printed")
}

func TestTokenIsExchangedForACookie(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != consoleHost || u.Query().Get(TokenParam) != s.token || len(s.token) < 40 {
		t.Fatalf("URL %s: want the console's address and a long random token", s.URL())
	}
	w := request(t, s, http.MethodGet, "/events?phase=Failed&token="+url.QueryEscape(s.token), nil, false)
	expectStatus(t, w, http.StatusSeeOther)
	// The token leaves the address bar (and history) at once; the rest of the query stays.
	if loc := w.Header().Get("Location"); loc != "/events?phase=Failed" {
		t.Errorf("redirect to %q, want /events?phase=Failed", loc)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v, want one", cookies)
	}
	c := cookies[0]
	if c.Name != s.cookieName || c.Value != s.token || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want the token, HttpOnly, SameSite=Strict, Path=/", c)
	}
	// A token is never taken from a form: only the printed URL carries it.
	expectStatus(t, request(t, s, http.MethodPost, "/events/redeliver-failed?token="+url.QueryEscape(s.token),
		url.Values{}, false), http.StatusUnauthorized)
}

func TestForeignHostIsRefused(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	for _, host := range []string{"attacker.example:43117", "127.0.0.1:80", "127.0.0.2:43117"} {
		w := request(t, s, http.MethodGet, "/endpoints?token="+url.QueryEscape(s.token), nil, true, func(r *http.Request) {
			r.Host = host
		})
		expectStatus(t, w, http.StatusMisdirectedRequest)
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("Host %s: a cookie was set", host)
		}
	}
	w := request(t, s, http.MethodGet, "/endpoints", nil, true, func(r *http.Request) { r.Host = "localhost:43117" })
	expectStatus(t, w, http.StatusOK)
}

func TestPostsNeedTheCSRFToken(t *testing.T) {
	ns := newNamespace(t)
	createEndpoint(t, ns, "orders", webhooksv1alpha1.WebhookEndpointStatus{})
	s := newConsole(t, ns, nil)
	target := "/namespaces/" + ns + "/endpoints/orders/test"
	sameOrigin := func(r *http.Request) { r.Header.Set("Origin", "http://"+consoleHost) }

	expectStatus(t, request(t, s, http.MethodPost, target, url.Values{}, true, sameOrigin), http.StatusForbidden)
	expectStatus(t, request(t, s, http.MethodPost, target, url.Values{CSRFField: {"wrong"}}, true, sameOrigin), http.StatusForbidden)
	// The right token from another origin (a page that learned it could not read it, but still).
	for _, edit := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("Origin", "http://attacker.example") },
		func(r *http.Request) { r.Header.Set("Origin", "null") },
		func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
	} {
		expectStatus(t, request(t, s, http.MethodPost, target, url.Values{CSRFField: {s.csrf}}, true, edit), http.StatusForbidden)
	}
	expectStatus(t, request(t, s, http.MethodPut, target, url.Values{CSRFField: {s.csrf}}, true, sameOrigin), http.StatusMethodNotAllowed)
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, ep); err != nil {
		t.Fatal(err)
	}
	if _, ok := ep.Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]; ok {
		t.Fatal("a refused POST requested a test webhook")
	}

	w := post(t, s, target, nil)
	expectStatus(t, w, http.StatusSeeOther)
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, ep); err != nil {
		t.Fatal(err)
	}
	requested := ep.Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]
	if requested == "" || w.Header().Get("Location") != target[:len(target)-len("/test")]+"?test="+url.QueryEscape(requested) {
		t.Fatalf("annotation %q, redirect %q: want the test requested and the page waiting for it", requested, w.Header().Get("Location"))
	}
	// The endpoint page waits for that request's result, and shows it when it arrives.
	page := get(t, s, w.Header().Get("Location"))
	expectBody(t, page, `id="test-waiting"`)
	ep.Status.LastTest = &webhooksv1alpha1.TestResult{RequestedAt: requested, StatusCode: 200, Success: true,
		Duration: &metav1.Duration{Duration: 4100000}}
	if err := cluster.Client.Status().Update(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	page = get(t, s, w.Header().Get("Location"))
	if strings.Contains(page.Body.String(), `id="test-waiting"`) {
		t.Error("still waiting after the result arrived")
	}
	expectBody(t, page, `<dd class="test-status">200</dd>`, "succeeded", "4.1ms")
}

func TestHostileFieldsRenderAsText(t *testing.T) {
	ns := newNamespace(t)
	const hostile = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	createEndpoint(t, ns, "orders", webhooksv1alpha1.WebhookEndpointStatus{
		URL: "https://receiver.example/hook",
		Conditions: []metav1.Condition{{Type: webhooksv1alpha1.ReadyCondition, Status: metav1.ConditionFalse,
			Reason: "SecretNotFound", Message: hostile, LastTransitionTime: metav1.Now()}},
		LastTest: &webhooksv1alpha1.TestResult{RequestedAt: "x", Error: hostile},
	})
	createEvent(t, ns, "hostile", func(ev *webhooksv1alpha1.DocumentEvent) {
		ev.Spec.DocumentStatus.DocType = ptr.To("INVOICE")
		ev.Spec.Document = &webhooksv1alpha1.DocumentSummary{Description: ptr.To(hostile)}
	}, func(ev *webhooksv1alpha1.DocumentEvent) {
		ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
		ev.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{failedDelivery("orders", "d-1", hostile)}
	})
	s := newConsole(t, ns, nil)
	for _, target := range []string{"/endpoints", "/namespaces/" + ns + "/endpoints/orders", "/events",
		"/namespaces/" + ns + "/events/hostile", "/events?docType=" + url.QueryEscape(hostile)} {
		w := get(t, s, target)
		body := w.Body.String()
		if strings.Contains(body, "<script>window") || strings.Contains(body, "<img") {
			t.Errorf("%s: markup from an object reached the page:\n%s", target, body)
		}
		if strings.Contains(body, "<script") && !strings.Contains(body, `<script src="/static/console.js" defer></script>`) {
			t.Errorf("%s: a script element other than the console's own", target)
		}
	}
	expectBody(t, get(t, s, "/namespaces/"+ns+"/events/hostile"), "&lt;script&gt;window.pwned=1&lt;/script&gt;")
}

func TestEventPageShowsPayloadAndHeadersWithoutSignature(t *testing.T) {
	ns := newNamespace(t)
	ep := createEndpoint(t, ns, "orders", webhooksv1alpha1.WebhookEndpointStatus{URL: "https://receiver.example/hook"})
	ev := createEvent(t, ns, "doc-1", func(ev *webhooksv1alpha1.DocumentEvent) {
		ev.Spec.DocumentStatus.DocType = ptr.To("INVOICE")
		ev.Spec.Document = &webhooksv1alpha1.DocumentSummary{Description: ptr.To("Office chairs & desks"),
			TotalAmount: ptr.To(webhooksv1alpha1.Decimal("1234.50"))}
	}, nil)
	id := routing.DeliveryID(ev.UID, ep.UID)
	ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
	ev.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{failedDelivery("orders", id, "HTTP 500: boom")}
	if err := cluster.Client.Status().Update(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	body, err := payload.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	s := newConsole(t, ns, nil)
	w := get(t, s, "/namespaces/"+ns+"/events/doc-1")
	expectStatus(t, w, http.StatusOK)
	// The body as sent, escaped for HTML only: &amp; turns back into & in the browser.
	escaped := strings.NewReplacer("&", "&amp;", `"`, "&#34;", "<", "&lt;", ">", "&gt;", "'", "&#39;", "+", "&#43;").Replace(string(body))
	expectBody(t, w, escaped, id, "X-Webhook-Timestamp", "X-Webhook-Signature", notShown, "HTTP 500: boom", "AttemptsExhausted")
	// The endpoint page lists that delivery among its recent ones, and the endpoints page counts it.
	expectBody(t, get(t, s, "/namespaces/"+ns+"/endpoints/orders"), id, "HTTP 500: boom", "Secret signing, key signingSecret")
	endpoints := get(t, s, "/endpoints")
	expectBody(t, endpoints, `<td class="num">0</td>`, `class="bad">1</a>`, "https://receiver.example/hook")
	if strings.Contains(endpoints.Body.String(), "user:pass") || strings.Contains(endpoints.Body.String(), "key=abc") {
		t.Error("the endpoints page shows spec.url's credentials; it must show status.url")
	}
}

func TestEventsFilterAndRedeliverFailed(t *testing.T) {
	ns := newNamespace(t)
	failed := func(ev *webhooksv1alpha1.DocumentEvent) {
		ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
		ev.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{failedDelivery("orders", "d-"+ev.Name, "HTTP 500")}
	}
	invoice := func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus.DocType = ptr.To("INVOICE") }
	receipt := func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus.DocType = ptr.To("RECEIPT") }
	createEvent(t, ns, "invoice-failed-1", invoice, failed)
	createEvent(t, ns, "invoice-failed-2", invoice, failed)
	createEvent(t, ns, "receipt-failed", receipt, failed)
	createEvent(t, ns, "invoice-delivered", invoice, func(ev *webhooksv1alpha1.DocumentEvent) {
		ev.Status.Phase = webhooksv1alpha1.DocumentEventDelivered
	})
	s := newConsole(t, ns, nil)

	w := get(t, s, "/events?phase=Failed&docType=INVOICE")
	expectStatus(t, w, http.StatusOK)
	expectBody(t, w, "invoice-failed-1", "invoice-failed-2")
	if strings.Contains(w.Body.String(), "receipt-failed") || strings.Contains(w.Body.String(), "invoice-delivered") {
		t.Errorf("the filter let other events through:\n%s", w.Body.String())
	}
	expectBody(t, get(t, s, "/events?endpoint=nobody"), "No events match")
	// Endpoint and age are filtered by the console; a filter it cannot read says how to write it.
	expectBody(t, get(t, s, "/events?endpoint=orders&age=1h&phase=Failed"), "invoice-failed-1", "receipt-failed")
	badAge := get(t, s, "/events?age=yesterday")
	expectStatus(t, badAge, http.StatusBadRequest)
	expectBody(t, badAge, "is not a positive duration such as 15m")

	confirm := get(t, s, "/events/redeliver-failed?docType=INVOICE")
	expectStatus(t, confirm, http.StatusOK)
	expectBody(t, confirm, "<strong>2</strong> events", "with docType INVOICE", "invoice-failed-1")

	w = post(t, s, "/events/redeliver-failed", url.Values{"docType": {"INVOICE"}})
	expectStatus(t, w, http.StatusSeeOther)
	expectBody(t, get(t, s, w.Header().Get("Location")), "requested for 2 events")
	list := &webhooksv1alpha1.DocumentEventList{}
	if err := cluster.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range list.Items {
		requested := ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] != ""
		if want := strings.HasPrefix(ev.Name, "invoice-failed"); requested != want {
			t.Errorf("%s: redelivery requested %t, want %t", ev.Name, requested, want)
		}
		if requested && ev.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation] != webhooksv1alpha1.RedeliverScopeFailed {
			t.Errorf("%s: scope %q, want failed", ev.Name, ev.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation])
		}
	}

	w = post(t, s, "/namespaces/"+ns+"/events/receipt-failed/redeliver", nil)
	expectStatus(t, w, http.StatusSeeOther)
	expectBody(t, get(t, s, w.Header().Get("Location")), "waiting for the operator")
}

func TestEventsArePaged(t *testing.T) {
	ns := newNamespace(t)
	for i := range eventsPerPage + 5 {
		createEvent(t, ns, fmt.Sprintf("ev-%03d", i), nil, nil)
	}
	s := newConsole(t, ns, nil)
	first := get(t, s, "/events")
	expectBody(t, first, "ev-000", "ev-049", `id="next-page"`)
	if strings.Contains(first.Body.String(), "ev-050") {
		t.Error("the first page holds more than a page of events")
	}
	start := strings.Index(first.Body.String(), `<a href="/events?continue=`)
	end := strings.Index(first.Body.String()[start:], `" id="next-page"`)
	next := strings.ReplaceAll(first.Body.String()[start+len(`<a href="`):start+end], "&amp;", "&")
	second := get(t, s, next)
	expectBody(t, second, "ev-050", "ev-054")
	if strings.Contains(second.Body.String(), "ev-049") || strings.Contains(second.Body.String(), `id="next-page"`) {
		t.Errorf("second page:\n%s", second.Body.String())
	}
}

func TestRBACRefusalsAreReadable(t *testing.T) {
	ns := newNamespace(t)
	createEvent(t, ns, "doc-1", nil, nil)
	// A user who may read the operator's objects in the namespace, and change nothing.
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{webhooksv1alpha1.GroupVersion.Group},
		Resources: []string{"webhookendpoints", "documentevents"}, Verbs: []string{"get", "list"},
	}}}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "viewer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer-" + ns}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	user, err := cluster.Env.AddUser(envtest.User{Name: "viewer-" + ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := client.New(user.Config(), client.Options{Scheme: localcluster.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := newConsole(t, ns, viewer)
	expectStatus(t, get(t, s, "/events"), http.StatusOK)
	w := post(t, s, "/namespaces/"+ns+"/events/doc-1/redeliver", nil)
	expectStatus(t, w, http.StatusForbidden)
	expectBody(t, w, "you may not patch documentevents in namespace "+ns)

	all := newConsole(t, "", viewer)
	w = get(t, all, "/endpoints")
	expectStatus(t, w, http.StatusForbidden)
	expectBody(t, w, "you may not list webhookendpoints in all namespaces")
}

func TestOtherNamespacesAreOutsideTheConsole(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	w := get(t, s, "/namespaces/kube-system/events/anything")
	expectStatus(t, w, http.StatusNotFound)
	expectBody(t, w, "outside this console")
}

// A script may send the CSRF token in the X-Console-CSRF header instead of the form: the form is read all
// the same, so Redeliver failed keeps to its filter. Bodies are small urlencoded forms: anything larger,
// or multipart, is refused before it is read.
func TestAFormIsReadWhateverCarriesTheCSRFTokenAndBodiesAreBounded(t *testing.T) {
	ns := newNamespace(t)
	failed := func(ev *webhooksv1alpha1.DocumentEvent) {
		ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
		ev.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{failedDelivery("billing", "d-"+ev.Name, "HTTP 500")}
	}
	createEvent(t, ns, "invoice-failed", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus.DocType = ptr.To("INVOICE") }, failed)
	createEvent(t, ns, "receipt-failed", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus.DocType = ptr.To("RECEIPT") }, failed)
	s := newConsole(t, ns, nil)
	fromScript := func(r *http.Request) {
		r.Header.Set(CSRFHeader, s.csrf)
		r.Header.Set("Origin", "http://"+consoleHost)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}

	w := request(t, s, http.MethodPost, "/events/redeliver-failed", url.Values{"docType": {"NOTHING-MATCHES"}}, true, fromScript)
	expectStatus(t, w, http.StatusSeeOther)
	list := &webhooksv1alpha1.DocumentEventList{}
	if err := cluster.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range list.Items {
		if ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] != "" {
			t.Errorf("%s redelivered by a filter that matches nothing", ev.Name)
		}
	}

	big := url.Values{"docType": {strings.Repeat("x", 1<<20)}}
	expectStatus(t, request(t, s, http.MethodPost, "/events/redeliver-failed", big, true, fromScript), http.StatusRequestEntityTooLarge)
	multipart := request(t, s, http.MethodPost, "/events/redeliver-failed", url.Values{"docType": {"INVOICE"}}, true, fromScript,
		func(r *http.Request) { r.Header.Set("Content-Type", "multipart/form-data; boundary=x") })
	expectStatus(t, multipart, http.StatusUnsupportedMediaType)
}

// A notice shows only what the console computed: a count in the link it redirected to. Another page's
// link with words of its own in that place shows no notice at all.
func TestNoticesShowOnlyWhatTheConsoleComputed(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	expectBody(t, get(t, s, "/events?redelivered=3"), "requested for 3 events")
	for _, forged := range []string{"all your events. Call +1 555 0100 to confirm", "-2", "3x"} {
		w := get(t, s, "/events?redelivered="+url.QueryEscape(forged))
		expectStatus(t, w, http.StatusOK)
		if strings.Contains(w.Body.String(), "Redelivery of the failed deliveries requested") {
			t.Errorf("redelivered=%q shows a notice:\n%s", forged, w.Body.String())
		}
	}
}

// The token exchange redirects to the console's own page: a path that starts with two slashes (or a
// slash and a backslash) would otherwise name another host to the browser.
func TestTheTokenExchangeRedirectsOnlyToTheConsolesOwnPaths(t *testing.T) {
	s := newConsole(t, newNamespace(t), nil)
	for _, path := range []string{"//evil.example/x", "/\\evil.example/x", "///evil.example"} {
		w := request(t, s, http.MethodGet, path+"?"+TokenParam+"="+s.token, nil, false)
		expectStatus(t, w, http.StatusSeeOther)
		location := w.Header().Get("Location")
		if !strings.HasPrefix(location, "/") || strings.HasPrefix(location, "//") || strings.HasPrefix(location, "/\\") {
			t.Errorf("%s: redirected to %q, another host for a browser", path, location)
		}
	}
}
