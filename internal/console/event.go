package console

import (
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/payload"
	"github.com/1flow/webhook-operator/internal/webhookops"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// header is one request header as the event page shows it.
type header struct{ Name, Value string }

// deliveryView is the timeline of one delivery of an event.
type deliveryView struct {
	Endpoint, EndpointLink, DeliveryID, Phase, Reason, LastAttempt, NextAttempt, Status, Error, DeliveredAt, Duration string
	Attempts                                                                                                          int32
	// Headers are the headers of the delivery's requests, without the signature headers when the
	// endpoint (as it is now) has no signing secret or is gone.
	Headers []header
}

type conditionView struct{ Type, Status, Reason, Message string }

type eventContent struct {
	Namespace, Name, DocumentID, DocType, Event, Phase, Created, Completed, RedeliverAction string
	Conditions                                                                              []conditionView
	Deliveries                                                                              []deliveryView
	// Payload is the request body, byte for byte as the receiver gets it.
	Payload      string
	PayloadError string
	// Redelivery reports the redelivery this page requested: waiting, or confirmed by the operator.
	Redelivery string
}

// notShown stands in for a signature: the console never computes or shows one, as it never reads the
// signing secret.
const notShown = "(not shown: computed with the signing secret)"

func (s *Server) eventPage(w http.ResponseWriter, r *http.Request) {
	key, ok := s.objectKey(w, r)
	if !ok {
		return
	}
	l := layout{Title: "Event " + key.Name, Nav: eventsSection, RefreshSeconds: s.refreshSeconds()}
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := s.opts.Client.Get(r.Context(), key, ev); err != nil {
		s.renderMessage(w, describeAPIError(err, "get", "documentevents", key.Namespace), l.Title, "/events")
		return
	}
	content := &eventContent{
		Namespace: ev.Namespace, Name: ev.Name, DocumentID: ev.Spec.DocumentID, DocType: "-",
		Event: string(ev.GetEvent()), Phase: string(ev.Status.Phase),
		Created:         ev.CreationTimestamp.UTC().Format(time.RFC3339),
		RedeliverAction: eventLink(ev.Namespace, ev.Name) + "/redeliver",
	}
	if t := ev.Spec.DocumentStatus.DocType; t != nil {
		content.DocType = *t
	}
	if t := ev.Status.CompletionTime; t != nil {
		content.Completed = microTime(t)
	}
	for _, c := range ev.Status.Conditions {
		content.Conditions = append(content.Conditions, conditionView{c.Type, string(c.Status), c.Reason, c.Message})
	}
	if requested := r.URL.Query().Get("redelivery"); requested != "" {
		content.Redelivery = "Redelivery requested; waiting for the operator to act on it."
		if ev.Status.LastRedeliveryRequest == requested {
			content.Redelivery = "Redelivery requested; the operator restarted the deliveries (same X-Webhook-Id for unchanged endpoints)."
		}
	}
	body, err := payload.Encode(ev)
	if err != nil {
		content.PayloadError = err.Error()
	}
	content.Payload = string(body)

	// The scheme, and whether requests are signed, come from the endpoints as they are now.
	endpoints := map[string]*webhooksv1alpha1.WebhookEndpoint{}
	status := http.StatusOK
	if list, err := webhookops.ListEndpoints(r.Context(), s.opts.Client, ev.Namespace); err != nil {
		p := describeAPIError(err, "list", "webhookendpoints", ev.Namespace)
		l, status = withProblem(l, p), p.status
	} else {
		for i := range list {
			endpoints[list[i].Name] = &list[i]
		}
	}
	for i := range ev.Status.Deliveries {
		content.Deliveries = append(content.Deliveries, timeline(&ev.Status.Deliveries[i], endpoints[ev.Status.Deliveries[i].Endpoint]))
	}
	l.Content = content
	s.render(w, status, eventTemplate, l)
}

// timeline shows one delivery: its attempts, last answer, next attempt and the headers of its requests.
func timeline(d *webhooksv1alpha1.EndpointDelivery, ep *webhooksv1alpha1.WebhookEndpoint) deliveryView {
	v := deliveryView{
		Endpoint: d.Endpoint, DeliveryID: d.DeliveryID,
		Phase: string(d.Phase), Reason: d.Reason, Attempts: d.Attempts, Error: d.LastError,
		Status: "-", Duration: webhookops.RecordedDuration(d.Duration), LastAttempt: "-", NextAttempt: "-", DeliveredAt: "-",
	}
	if ep != nil {
		v.EndpointLink = endpointLink(ep.Namespace, ep.Name)
	}
	if d.Attempts > 0 {
		v.Status = statusCode(d.LastStatusCode)
	}
	if d.LastAttemptTime != nil {
		v.LastAttempt = microTime(d.LastAttemptTime)
	}
	if d.NextAttemptTime != nil {
		v.NextAttempt = microTime(d.NextAttemptTime)
	}
	if d.DeliveredAt != nil {
		v.DeliveredAt = microTime(d.DeliveredAt)
	}
	v.Headers = requestHeaders(d, ep)
	return v
}

// requestHeaders lists the headers of a delivery's requests as internal/delivery sends them, with the
// timestamp of its last attempt (the attempt's start, which is what is signed) and never a signature.
func requestHeaders(d *webhooksv1alpha1.EndpointDelivery, ep *webhooksv1alpha1.WebhookEndpoint) []header {
	headers := []header{
		{"Content-Type", delivery.ContentType},
		{"User-Agent", delivery.UserAgent},
		{signature.HeaderID, d.DeliveryID},
	}
	if ep == nil || ep.Spec.SecretRef == nil {
		return headers
	}
	timestamp := func(format func(time.Time) string) string {
		if d.LastAttemptTime == nil {
			return "(set when an attempt starts)"
		}
		return format(d.LastAttemptTime.Time)
	}
	if ep.GetSignatureScheme() == webhooksv1alpha1.SignatureSchemeStandardWebhooks {
		return append(headers,
			header{signature.StandardHeaderID, d.DeliveryID},
			header{signature.StandardHeaderTimestamp, timestamp(func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) })},
			header{signature.StandardHeaderSignature, notShown})
	}
	return append(headers,
		header{signature.HeaderTimestamp, timestamp(signature.Timestamp)},
		header{signature.HeaderSignature, notShown})
}

func microTime(t *metav1.MicroTime) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
