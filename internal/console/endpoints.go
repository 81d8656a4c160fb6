package console

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

// endpointRow is one line of the endpoints page.
type endpointRow struct {
	Namespace, Name, Link, TestAction string
	// URL is status.url: spec.url with user information, query values and fragment redacted.
	URL       string
	Scheme    string
	Readiness webhookops.Readiness
	Circuit   string
	Last      lastDeliveryView
	// ConsecutiveFailures counts failed attempts since the last successful one.
	ConsecutiveFailures int32
	Counts              webhookops.Counts
	// FailedLink lists the Failed events with a delivery to this endpoint.
	FailedLink string
}

// lastDeliveryView is the last attempt of an endpoint: "12s ago", "200", "4.1ms".
type lastDeliveryView struct {
	Age, Status, Duration, Event, EventLink string
	Success, Known                          bool
}

type formerRow struct {
	Namespace, Name, What string
	Counts                webhookops.Counts
}

type endpointsContent struct {
	AllNamespaces bool
	Rows          []endpointRow
	Former        []formerRow
}

func (s *Server) endpointsPage(w http.ResponseWriter, r *http.Request) {
	ctx, ns := r.Context(), s.opts.Namespace
	l := layout{Title: "Endpoints", Nav: endpointsSection, RefreshSeconds: s.refreshSeconds()}
	content := &endpointsContent{AllNamespaces: ns == ""}
	l.Content = content
	status := http.StatusOK
	endpoints, err := webhookops.ListEndpoints(ctx, s.opts.Client, ns)
	if err != nil {
		p := describeAPIError(err, "list", "webhookendpoints", ns)
		s.render(w, p.status, endpointsTemplate, withProblem(l, p))
		return
	}
	// As `kubectl webhook status` does: a Delivered event adds to no count, so the API server leaves
	// those out, which are usually nearly all of them.
	events, err := webhookops.ListEvents(ctx, s.opts.Client, ns,
		fields.OneTermNotEqualSelector(phaseField, string(webhooksv1alpha1.DocumentEventDelivered)),
		func(ev *webhooksv1alpha1.DocumentEvent) bool {
			return ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered
		})
	if err != nil {
		p := describeAPIError(err, "list", "documentevents", ns)
		l = withProblem(l, p)
		status = p.status
	}
	counts, former := webhookops.CountDeliveries(endpoints, events)
	now := s.opts.Now()
	for i := range endpoints {
		ep := &endpoints[i]
		row := endpointRow{
			Namespace: ep.Namespace, Name: ep.Name,
			Link:       endpointLink(ep.Namespace, ep.Name),
			TestAction: endpointLink(ep.Namespace, ep.Name) + "/test",
			URL:        ep.Status.URL, Scheme: string(ep.GetSignatureScheme()),
			Readiness: webhookops.EndpointReadiness(ep), Circuit: "closed",
			Last:                lastDelivery(ep, now),
			ConsecutiveFailures: ep.Status.ConsecutiveFailures,
			Counts:              *counts[webhookops.EndpointKey{Namespace: ep.Namespace, Name: ep.Name}],
			FailedLink:          eventsLink(eventFilter{Phase: string(webhooksv1alpha1.DocumentEventFailed), Endpoint: ep.Name, Namespace: ep.Namespace}),
		}
		if row.Readiness.CircuitOpen {
			row.Circuit = "open"
		}
		content.Rows = append(content.Rows, row)
	}
	keys := slices.SortedFunc(maps.Keys(former), func(a, b webhookops.EndpointKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, key := range keys {
		what := "deleted"
		if former[key].Recreated {
			what = "earlier endpoint, since re-created"
		}
		content.Former = append(content.Former, formerRow{Namespace: key.Namespace, Name: key.Name, What: what, Counts: former[key].Counts})
	}
	s.render(w, status, endpointsTemplate, l)
}

func lastDelivery(ep *webhooksv1alpha1.WebhookEndpoint, now time.Time) lastDeliveryView {
	d := ep.Status.LastDelivery
	if d == nil || d.Time.IsZero() {
		return lastDeliveryView{}
	}
	v := lastDeliveryView{
		Known: true, Success: d.Success,
		Age:      duration.HumanDuration(now.Sub(d.Time.Time)) + " ago",
		Status:   statusCode(d.StatusCode),
		Duration: webhookops.RecordedDuration(d.Duration),
		Event:    d.Event,
	}
	if d.Event != "" {
		v.EventLink = eventLink(ep.Namespace, d.Event)
	}
	return v
}

// statusCode shows an HTTP status, or that no response came.
func statusCode(code int32) string {
	if code == 0 {
		return "no response"
	}
	return fmt.Sprint(code)
}

// setting is one line of an endpoint's settings.
type setting struct{ Name, Value string }

// testView is the last test webhook of an endpoint, or the one just requested.
type testView struct {
	Known, Success                      bool
	RequestedAt, Time, Status, Duration string
	Error                               string
	// Waiting is set while the test that this page requested has no result yet.
	Waiting bool
}

// recentDelivery is one delivery to the endpoint, from the events' status.
type recentDelivery struct {
	Event, EventLink, DeliveryID, Phase, Reason, Status, Error, LastAttempt string
	Attempts                                                                int32
	at                                                                      time.Time
}

type endpointContent struct {
	Namespace, Name, URL, TestAction, EventsLink string
	Readiness                                    webhookops.Readiness
	Circuit                                      string
	ConsecutiveFailures                          int32
	Settings                                     []setting
	Last                                         lastDeliveryView
	Test                                         testView
	Recent                                       []recentDelivery
	// ScanNote says when recent deliveries were looked for in only part of the events.
	ScanNote string
}

// Recent deliveries are looked for in at most this many events of the namespace, read in pages, so
// that the page stays fast next to 50,000 events; recentShown are shown, the latest first.
const (
	recentScanLimit = 5000
	recentShown     = 20
)

func (s *Server) endpointPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key, ok := s.objectKey(w, r)
	if !ok {
		return
	}
	l := layout{Title: "Endpoint " + key.Name, Nav: endpointsSection, RefreshSeconds: s.refreshSeconds()}
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := s.opts.Client.Get(ctx, key, ep); err != nil {
		s.renderMessage(w, describeAPIError(err, "get", "webhookendpoints", key.Namespace), l.Title, "/endpoints")
		return
	}
	readiness := webhookops.EndpointReadiness(ep)
	content := &endpointContent{
		Namespace: ep.Namespace, Name: ep.Name, URL: ep.Status.URL,
		TestAction:          endpointLink(ep.Namespace, ep.Name) + "/test",
		EventsLink:          eventsLink(eventFilter{Namespace: ep.Namespace, Endpoint: ep.Name}),
		Readiness:           readiness,
		Circuit:             "closed",
		ConsecutiveFailures: ep.Status.ConsecutiveFailures,
		Settings:            endpointSettings(ep),
		Last:                lastDelivery(ep, s.opts.Now()),
		Test:                lastTest(ep, r.URL.Query().Get("test")),
	}
	if readiness.CircuitOpen {
		content.Circuit = "open"
	}
	l.Content = content
	status := http.StatusOK
	recent, scanned, more, err := s.recentDeliveries(r, ep)
	if err != nil {
		p := describeAPIError(err, "list", "documentevents", ep.Namespace)
		l, status = withProblem(l, p), p.status
	}
	content.Recent = recent
	if more {
		content.ScanNote = fmt.Sprintf("Deliveries found in the first %d events of the namespace (in name order); "+
			"filter the events page by this endpoint to see the others.", scanned)
	}
	s.render(w, status, endpointTemplate, l)
}

// endpointSettings lists the spec as the settings page of the contract shows it. The signing secret
// appears as its Secret's name and key: the console never reads a Secret.
func endpointSettings(ep *webhooksv1alpha1.WebhookEndpoint) []setting {
	secret := "none: requests are not signed"
	if ref := ep.Spec.SecretRef; ref != nil {
		secret = fmt.Sprintf("Secret %s, key %s", ref.Name, ep.GetSecretKey())
	}
	list := func(values []string) string {
		if len(values) == 0 {
			return "all"
		}
		return fmt.Sprint(values)
	}
	eventTypes := make([]string, 0, len(ep.Spec.EventTypes))
	for _, t := range ep.Spec.EventTypes {
		eventTypes = append(eventTypes, string(t))
	}
	tls := "system roots"
	if t := ep.Spec.TLS; t != nil {
		tls = ""
		if t.CASecretRef != nil {
			tls = "CA from Secret " + t.CASecretRef.Name
		}
		if t.ClientCertSecretRef != nil {
			tls += "; client certificate from Secret " + t.ClientCertSecretRef.Name
		}
	}
	return []setting{
		{"Callback URL", ep.Status.URL},
		{"Signing secret", secret},
		{"Signature scheme", string(ep.GetSignatureScheme())},
		{"Event types", list(eventTypes)},
		{"Document types", list(ep.Spec.DocTypes)},
		{"Timeout", delivery.FormatDuration(ep.GetTimeout())},
		{"Retries", fmt.Sprintf("%s, from %s up to %s apart", delivery.Count(ep.GetMaxAttempts(), "attempt"),
			ep.GetInitialInterval(), ep.GetMaxInterval())},
		{"Circuit breaker", fmt.Sprintf("opens after %s, probes after %s",
			delivery.Count(ep.GetFailureThreshold(), "consecutive failure"), ep.GetCooldown())},
		{"In flight", fmt.Sprintf("at most %d", ep.GetMaxInFlight())},
		{"Suspended", fmt.Sprint(ep.Spec.Suspend)},
		{"TLS", tls},
	}
}

// lastTest shows status.lastTest; requested is the test this page asked for ("" for none), which is
// waited for until the operator records its result.
func lastTest(ep *webhooksv1alpha1.WebhookEndpoint, requested string) testView {
	t := ep.Status.LastTest
	v := testView{}
	if t != nil {
		v = testView{
			Known: true, Success: t.Success, RequestedAt: t.RequestedAt,
			Status: statusCode(t.StatusCode), Duration: webhookops.RecordedDuration(t.Duration), Error: t.Error,
		}
		if t.Time != nil {
			v.Time = t.Time.UTC().Format(time.RFC3339)
		}
	}
	v.Waiting = requested != "" && (t == nil || t.RequestedAt != requested)
	return v
}

// recentDeliveries returns the latest deliveries made to this very endpoint (not to an earlier one of
// the same name), reading at most recentScanLimit events; more is true when there were more events.
func (s *Server) recentDeliveries(r *http.Request, ep *webhooksv1alpha1.WebhookEndpoint) (
	recent []recentDelivery, scanned int, more bool, err error) {
	cont := ""
	for scanned < recentScanLimit {
		list := &webhooksv1alpha1.DocumentEventList{}
		if err := s.opts.Client.List(r.Context(), list, client.InNamespace(ep.Namespace),
			client.Limit(webhookops.PageSize), client.Continue(cont)); err != nil {
			return nil, scanned, false, err
		}
		scanned += len(list.Items)
		for i := range list.Items {
			ev := &list.Items[i]
			for j := range ev.Status.Deliveries {
				d := &ev.Status.Deliveries[j]
				if webhookops.DeliveryBelongsTo(ev, d, ep) {
					recent = append(recent, recentView(ev, d))
				}
			}
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	sort.SliceStable(recent, func(i, j int) bool { return recent[i].at.After(recent[j].at) })
	return recent[:min(len(recent), recentShown)], scanned, cont != "", nil
}

func recentView(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery) recentDelivery {
	v := recentDelivery{
		Event: ev.Name, EventLink: eventLink(ev.Namespace, ev.Name), DeliveryID: d.DeliveryID,
		Phase: string(d.Phase), Reason: d.Reason, Attempts: d.Attempts, Error: d.LastError, Status: "-",
	}
	if d.Attempts > 0 {
		v.Status = statusCode(d.LastStatusCode)
	}
	if d.LastAttemptTime != nil {
		v.at = d.LastAttemptTime.Time
		v.LastAttempt = d.LastAttemptTime.UTC().Format(time.RFC3339)
	}
	return v
}

func (s *Server) sendTest(w http.ResponseWriter, r *http.Request) {
	key, ok := s.objectKey(w, r)
	if !ok {
		return
	}
	requestedAt := webhookops.RequestTime()
	patch, err := webhookops.TestRequestPatch(requestedAt)
	if err == nil {
		ep := &webhooksv1alpha1.WebhookEndpoint{}
		ep.Name, ep.Namespace = key.Name, key.Namespace
		err = s.opts.Client.Patch(r.Context(), ep, client.RawPatch(types.MergePatchType, patch))
	}
	if err != nil {
		s.renderMessage(w, describeAPIError(err, "patch", "webhookendpoints", key.Namespace),
			"Send test webhook", endpointLink(key.Namespace, key.Name))
		return
	}
	http.Redirect(w, r, endpointLink(key.Namespace, key.Name)+"?"+url.Values{"test": {requestedAt}}.Encode(), http.StatusSeeOther)
}

// objectKey reads the namespace and name of the request's path. A namespace outside the console's one
// is not found: the console shows only what it was started for.
func (s *Server) objectKey(w http.ResponseWriter, r *http.Request) (types.NamespacedName, bool) {
	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if s.opts.Namespace != "" && key.Namespace != s.opts.Namespace {
		http.Error(w, fmt.Sprintf("namespace %q is outside this console, which shows namespace %q; "+
			"start `kubectl webhook ui -n %s` for that one", key.Namespace, s.opts.Namespace, key.Namespace), http.StatusNotFound)
		return key, false
	}
	return key, true
}

func endpointLink(namespace, name string) string {
	return "/namespaces/" + url.PathEscape(namespace) + "/endpoints/" + url.PathEscape(name)
}

func eventLink(namespace, name string) string {
	return "/namespaces/" + url.PathEscape(namespace) + "/events/" + url.PathEscape(name)
}

func withProblem(l layout, p apiProblem) layout {
	l.Problems = append(l.Problems, p.message)
	return l
}

func (s *Server) refreshSeconds() int {
	return max(1, int(s.opts.Refresh/time.Second))
}
