package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

// Selectable fields of the DocumentEvent CRD (api/v1alpha1/documentevent_types.go): the API server
// filters on them, so a filter by phase or docType reads only the matching events.
const (
	phaseField   = "status.phase"
	docTypeField = "spec.documentStatus.docType"
)

// Paging of the events page. Without the endpoint and age filters, which the API server cannot apply,
// one request of eventsPerPage events makes a page. With them, the console reads up to scanPages
// requests of webhookops.PageSize events for a page, so that 50,000 events still answer quickly, and
// links to where it stopped.
const (
	eventsPerPage = 50
	scanPages     = 10
)

// ageChoices are the offered "created within" filters; any Go duration is accepted in the URL.
var ageChoices = []string{"15m", "1h", "6h", "24h", "168h"}

// phaseChoices are the phases the filter offers.
var phaseChoices = []webhooksv1alpha1.DocumentEventPhase{
	webhooksv1alpha1.DocumentEventPending, webhooksv1alpha1.DocumentEventDelivering,
	webhooksv1alpha1.DocumentEventDelivered, webhooksv1alpha1.DocumentEventFailed,
}

// eventFilter is what the events page shows, from its query.
type eventFilter struct {
	// Namespace narrows a console of all namespaces to one; a console of one namespace ignores it.
	Namespace string
	Phase     string
	DocType   string
	// Endpoint keeps events with a delivery to the endpoint of this name.
	Endpoint string
	// Age keeps events created within this duration, as written ("1h").
	Age   string
	Label string

	age   time.Duration
	label labels.Selector
}

func parseFilter(q url.Values) (eventFilter, error) {
	f := eventFilter{
		Namespace: q.Get("namespace"), Phase: q.Get("phase"), DocType: q.Get("docType"),
		Endpoint: q.Get("endpoint"), Age: q.Get("age"), Label: q.Get("label"),
	}
	var err error
	if f.Age != "" {
		if f.age, err = time.ParseDuration(f.Age); err != nil || f.age <= 0 {
			return f, fmt.Errorf("age %q is not a positive duration such as 15m, 1h or 168h", f.Age)
		}
	}
	if f.label, err = labels.Parse(f.Label); err != nil {
		return f, fmt.Errorf("label selector %q does not parse (write it as kubectl -l takes it, e.g. team=billing): %w", f.Label, err)
	}
	return f, nil
}

// query returns the filter as URL values, without the empty ones.
func (f eventFilter) query() url.Values {
	q := url.Values{}
	for name, value := range map[string]string{"namespace": f.Namespace, "phase": f.Phase, "docType": f.DocType,
		"endpoint": f.Endpoint, "age": f.Age, "label": f.Label} {
		if value != "" {
			q.Set(name, value)
		}
	}
	return q
}

func eventsLink(f eventFilter) string {
	if q := f.query().Encode(); q != "" {
		return "/events?" + q
	}
	return "/events"
}

// listOptions are the parts of the filter that the API server applies.
func (f eventFilter) listOptions(namespace string) []client.ListOption {
	var opts []client.ListOption
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	var selectors []fields.Selector
	if f.Phase != "" {
		selectors = append(selectors, fields.OneTermEqualSelector(phaseField, f.Phase))
	}
	if f.DocType != "" {
		selectors = append(selectors, fields.OneTermEqualSelector(docTypeField, f.DocType))
	}
	if len(selectors) > 0 {
		opts = append(opts, client.MatchingFieldsSelector{Selector: fields.AndSelectors(selectors...)})
	}
	if f.label != nil && !f.label.Empty() {
		opts = append(opts, client.MatchingLabelsSelector{Selector: f.label})
	}
	return opts
}

// filtersOnClient reports whether part of the filter is applied by the console, not the API server.
func (f eventFilter) filtersOnClient() bool { return f.Endpoint != "" || f.age > 0 }

// keeps applies the filters that the API server cannot: endpoint and age.
func (f eventFilter) keeps(ev *webhooksv1alpha1.DocumentEvent, now time.Time) bool {
	if f.age > 0 && ev.CreationTimestamp.Time.Before(now.Add(-f.age).Truncate(time.Second)) {
		return false
	}
	return f.Endpoint == "" || ev.GetDelivery(f.Endpoint) != nil
}

// namespace is where the filter lists: the console's namespace, else the filter's (all when "").
func (s *Server) namespace(f eventFilter) string {
	if s.opts.Namespace != "" {
		return s.opts.Namespace
	}
	return f.Namespace
}

type eventRow struct {
	Namespace, Name, Link, RedeliverAction, DocumentID, DocType, Phase, Age string
	Deliveries                                                              []deliveryChip
}

// deliveryChip is a delivery as the events table shows it: "orders-receiver Delivered 200".
type deliveryChip struct{ Endpoint, Phase, Status string }

type eventsContent struct {
	AllNamespaces   bool
	Filter          eventFilter
	Phases          []webhooksv1alpha1.DocumentEventPhase
	Ages            []string
	Rows            []eventRow
	NextLink        string
	FirstLink       string
	Scanned         int
	FiltersOnClient bool
	// RedeliverFailedLink asks to confirm redelivering the Failed events of the filter; empty when the
	// filter shows no Failed events (another phase).
	RedeliverFailedLink string
	// Redelivered reports a Redeliver failed that just ran.
	Redelivered string
}

func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request) {
	l := layout{Title: "Events", Nav: eventsSection, RefreshSeconds: s.refreshSeconds()}
	f, err := parseFilter(r.URL.Query())
	content := &eventsContent{
		AllNamespaces: s.opts.Namespace == "", Filter: f, Phases: phaseChoices, Ages: ageChoices,
		FiltersOnClient: f.filtersOnClient(), FirstLink: eventsLink(f),
	}
	l.Content = content
	if err != nil {
		s.render(w, http.StatusBadRequest, eventsTemplate, withProblem(l, apiProblem{message: err.Error()}))
		return
	}
	// Only a count the console itself put in the link it redirected to: any other text there is another
	// page's words, which a notice must not repeat.
	if n, err := strconv.Atoi(r.URL.Query().Get("redelivered")); err == nil && n >= 0 {
		l.Notices = append(l.Notices, "Redelivery of the failed deliveries requested for "+
			delivery.Count(n, "event")+"; the operator sends them again, under the same X-Webhook-Id.")
	}
	if f.Phase == "" || f.Phase == string(webhooksv1alpha1.DocumentEventFailed) {
		content.RedeliverFailedLink = "/events/redeliver-failed"
		if q := f.query().Encode(); q != "" {
			content.RedeliverFailedLink += "?" + q
		}
	}
	ns := s.namespace(f)
	events, next, scanned, err := s.listEventPage(r, f, ns, r.URL.Query().Get("continue"))
	if err != nil {
		p := describeListError(err, ns)
		s.render(w, p.status, eventsTemplate, withProblem(l, p))
		return
	}
	content.Scanned = scanned
	if next != "" {
		q := f.query()
		q.Set("continue", next)
		content.NextLink = "/events?" + q.Encode()
	}
	now := s.opts.Now()
	for i := range events {
		content.Rows = append(content.Rows, rowOf(&events[i], now))
	}
	s.render(w, http.StatusOK, eventsTemplate, l)
}

func rowOf(ev *webhooksv1alpha1.DocumentEvent, now time.Time) eventRow {
	row := eventRow{
		Namespace: ev.Namespace, Name: ev.Name, Link: eventLink(ev.Namespace, ev.Name),
		RedeliverAction: eventLink(ev.Namespace, ev.Name) + "/redeliver",
		DocumentID:      ev.Spec.DocumentID, DocType: "-", Phase: string(ev.Status.Phase),
		Age: duration.HumanDuration(now.Sub(ev.CreationTimestamp.Time)),
	}
	if t := ev.Spec.DocumentStatus.DocType; t != nil {
		row.DocType = *t
	}
	if row.Phase == "" {
		row.Phase = "New"
	}
	for _, d := range ev.Status.Deliveries {
		chip := deliveryChip{Endpoint: d.Endpoint, Phase: string(d.Phase)}
		if d.Attempts > 0 {
			chip.Status = statusCode(d.LastStatusCode)
		}
		row.Deliveries = append(row.Deliveries, chip)
	}
	return row
}

// describeListError explains a failed list of events; an API server that cannot select by the CRD's
// fields (before Kubernetes 1.31, or with the feature gate off) refuses the phase and docType filters.
func describeListError(err error, namespace string) apiProblem {
	p := describeAPIError(err, "list", "documentevents", namespace)
	if strings.Contains(err.Error(), "field label not supported") {
		p.message += ". This API server cannot filter DocumentEvents by field (selectable fields need Kubernetes 1.31 or later): clear the phase and docType filters"
	}
	return p
}

// listEventPage reads one page of the events page from cont on: the events the filter keeps, and where
// the next page starts ("" when this was the last).
func (s *Server) listEventPage(r *http.Request, f eventFilter, namespace, cont string) (
	events []webhooksv1alpha1.DocumentEvent, next string, scanned int, err error) {
	limit, pages := int64(eventsPerPage), 1
	if f.filtersOnClient() {
		limit, pages = webhookops.PageSize, scanPages
	}
	now := s.opts.Now()
	for range pages {
		list := &webhooksv1alpha1.DocumentEventList{}
		opts := append(f.listOptions(namespace), client.Limit(limit), client.Continue(cont))
		if err := s.opts.Client.List(r.Context(), list, opts...); err != nil {
			return nil, "", scanned, err
		}
		scanned += len(list.Items)
		for i := range list.Items {
			if f.keeps(&list.Items[i], now) {
				events = append(events, list.Items[i])
			}
		}
		if cont = list.Continue; cont == "" || len(events) >= eventsPerPage {
			break
		}
	}
	return events, cont, scanned, nil
}

// failedEvents lists every Failed event of the filter, for Redeliver failed.
func (s *Server) failedEvents(r *http.Request, f eventFilter) ([]webhooksv1alpha1.DocumentEvent, error) {
	f.Phase = string(webhooksv1alpha1.DocumentEventFailed)
	all, err := webhookops.ListEventPages(r.Context(), s.opts.Client, f.listOptions(s.namespace(f)))
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	kept := all[:0]
	for i := range all {
		if all[i].Status.Phase == webhooksv1alpha1.DocumentEventFailed && f.keeps(&all[i], now) {
			kept = append(kept, all[i])
		}
	}
	return kept, nil
}

type confirmContent struct {
	Filter   eventFilter
	Count    int
	Names    []string
	More     int
	Action   string
	Back     string
	Describe string
}

// confirmShown is how many event names the confirmation lists.
const confirmShown = 20

// confirmRedeliverFailed shows how many events Redeliver failed would touch, and asks to go on.
func (s *Server) confirmRedeliverFailed(w http.ResponseWriter, r *http.Request) {
	l := layout{Title: "Redeliver failed events", Nav: eventsSection}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		s.renderMessage(w, apiProblem{http.StatusBadRequest, err.Error()}, l.Title, "/events")
		return
	}
	events, err := s.failedEvents(r, f)
	if err != nil {
		s.renderMessage(w, describeListError(err, s.namespace(f)), l.Title, eventsLink(f))
		return
	}
	content := &confirmContent{Filter: f, Count: len(events), Back: eventsLink(f), Describe: s.describeFilter(f)}
	for i := range events[:min(len(events), confirmShown)] {
		name := events[i].Name
		if s.opts.Namespace == "" {
			name = events[i].Namespace + "/" + name
		}
		content.Names = append(content.Names, name)
	}
	content.More = len(events) - len(content.Names)
	content.Action = "/events/redeliver-failed"
	l.Content = content
	s.render(w, http.StatusOK, confirmTemplate, l)
}

// describeFilter says in words which Failed events a filter picks.
func (s *Server) describeFilter(f eventFilter) string {
	parts := []string{"Failed events"}
	if ns := s.namespace(f); ns != "" {
		parts = append(parts, "in namespace "+ns)
	} else {
		parts = append(parts, "in all namespaces")
	}
	if f.DocType != "" {
		parts = append(parts, "with docType "+f.DocType)
	}
	if f.Endpoint != "" {
		parts = append(parts, "with a delivery to "+f.Endpoint)
	}
	if f.Label != "" {
		parts = append(parts, "with labels "+f.Label)
	}
	if f.Age != "" {
		parts = append(parts, "created within "+f.Age)
	}
	return strings.Join(parts, " ")
}

// redeliverFailed requests, for every Failed event of the filter, the redelivery of its failed
// deliveries (scope failed), as `kubectl webhook redeliver --failed --scope failed` does: each goes to
// the same endpoint under the same X-Webhook-Id. The events are listed again, so the count is of the
// events that are Failed now.
func (s *Server) redeliverFailed(w http.ResponseWriter, r *http.Request) {
	title := "Redeliver failed events"
	f, err := parseFilter(r.PostForm)
	if err != nil {
		s.renderMessage(w, apiProblem{http.StatusBadRequest, err.Error()}, title, "/events")
		return
	}
	events, err := s.failedEvents(r, f)
	if err != nil {
		s.renderMessage(w, describeListError(err, s.namespace(f)), title, eventsLink(f))
		return
	}
	patch, err := webhookops.RedeliveryPatch(webhookops.RequestTime(), webhooksv1alpha1.RedeliverScopeFailed)
	if err != nil {
		s.renderMessage(w, apiProblem{http.StatusInternalServerError, err.Error()}, title, eventsLink(f))
		return
	}
	requested := 0
	for i := range events {
		key := types.NamespacedName{Namespace: events[i].Namespace, Name: events[i].Name}
		if err := s.patchEvent(r, key, patch); err != nil {
			p := describeAPIError(err, "patch", "documentevents", key.Namespace)
			if requested > 0 {
				p.message = fmt.Sprintf("redelivery requested for %s, then stopped at %s: %s",
					delivery.Count(requested, "event"), key.Name, p.message)
			}
			s.renderMessage(w, p, title, eventsLink(f))
			return
		}
		requested++
	}
	q := f.query()
	q.Set("redelivered", strconv.Itoa(requested))
	http.Redirect(w, r, "/events?"+q.Encode(), http.StatusSeeOther)
}

func (s *Server) patchEvent(r *http.Request, key types.NamespacedName, patch []byte) error {
	ev := &webhooksv1alpha1.DocumentEvent{}
	ev.Name, ev.Namespace = key.Name, key.Namespace
	return s.opts.Client.Patch(r.Context(), ev, client.RawPatch(types.MergePatchType, patch))
}

// redeliverEvent requests a full redelivery of one event, as `kubectl webhook redeliver EVENT` does.
func (s *Server) redeliverEvent(w http.ResponseWriter, r *http.Request) {
	key, ok := s.objectKey(w, r)
	if !ok {
		return
	}
	requestedAt := webhookops.RequestTime()
	patch, err := webhookops.RedeliveryPatch(requestedAt, "")
	if err == nil {
		err = s.patchEvent(r, key, patch)
	}
	if err != nil {
		s.renderMessage(w, describeAPIError(err, "patch", "documentevents", key.Namespace), "Redeliver "+key.Name,
			eventLink(key.Namespace, key.Name))
		return
	}
	http.Redirect(w, r, eventLink(key.Namespace, key.Name)+"?"+url.Values{"redelivery": {requestedAt}}.Encode(), http.StatusSeeOther)
}
