package controller

import (
	"encoding/json"
	"fmt"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

// etcdMaxRequestBytes is etcd's default --max-request-bytes (1.5 MiB). etcd refuses a larger write, and
// each write holds the whole event as stored: metadata with managedFields, spec and status. An event
// that reaches it can be delivered but its outcome never recorded, so it would be sent again on every
// restart. Managed Kubernetes services rarely let anyone raise it.
const etcdMaxRequestBytes = 3 << 19

// storeMarginBytes stays free under etcdMaxRequestBytes for what the estimate cannot see: the etcd key
// and request framing, an encryption-at-rest envelope, and small metadata edits after the check (a
// label, a redelivery annotation).
const storeMarginBytes = 16 << 10

// managedFieldsSlack stands for the managedFields of the event's creator and of later metadata edits,
// which the operator's cache strips (scope.go). They list the keys that were set, not their values: a
// few hundred bytes for a typical event, more for extraction objects with thousands of keys. The
// operator's own status entry is counted with the status.
const managedFieldsSlack = 64 << 10

// maxStoredEventBytes is the most an event may take as stored, its largest status included.
const maxStoredEventBytes = etcdMaxRequestBytes - storeMarginBytes - managedFieldsSlack

// The longest values of status fields whose length the schema leaves open.
const (
	// maxReasonBytes bounds the CamelCase reasons this operator writes (the longest, RedeliveryRequested,
	// has 19).
	maxReasonBytes = 32
	// maxConditionMessageBytes bounds the condition messages written while an event has deliveries:
	// summarize's counts and tooLargeMessage. Neither holds a character that JSON escapes.
	maxConditionMessageBytes = 1024
	// maxFieldManagerBytes is the API server's limit on a field manager's name.
	maxFieldManagerBytes = 128
	// jsonEscapeFactor is the most bytes JSON spends on one byte of a string: encoding/json (and so the
	// API server) writes <, > and & as \u003c, and control characters and U+2028 alike.
	jsonEscapeFactor = 6
)

// Templates of the status as JSON with empty strings, and numbers and phases at their longest. The
// sizes below add the strings' longest values to them; event_size_test.go checks the result against
// the real encoding. Times are UTC: a MicroTime has 27 bytes (2006-01-02T15:04:05.000000Z), a Time 20.
const (
	statusTemplate = `"status":{"observedGeneration":-9223372036854775808,"phase":"Delivering","deliveries":[],` +
		`"conditions":[],"completionTime":"","lastRedeliveryRequest":""},`
	deliveryTemplate = `{"endpoint":"","deliveryId":"","phase":"Delivered","reason":"","attempts":2147483647,` +
		`"lastAttemptTime":"","nextAttemptTime":"","lastStatusCode":-2147483648,"lastError":"",` +
		`"deliveredAt":"","duration":""},`
	conditionTemplate = `{"type":"Reconciling","status":"Unknown","observedGeneration":-9223372036854775808,` +
		`"lastTransitionTime":"2006-01-02T15:04:05Z","reason":"","message":""},`
	// The operator's managedFields entry for the status: the keys it set, deliveries by endpoint and
	// conditions by type.
	statusFieldsTemplate = `{"manager":"","operation":"Update","apiVersion":"webhooks.1flow.io/v1alpha1",` +
		`"time":"2006-01-02T15:04:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{".":{},"f:completionTime":{},` +
		`"f:conditions":{".":{}},"f:deliveries":{".":{}},"f:lastRedeliveryRequest":{},"f:observedGeneration":{},` +
		`"f:phase":{}}},"subresource":"status"},`
	deliveryFieldsTemplate = `"k:{\"endpoint\":\"\"}":{".":{},"f:attempts":{},"f:deliveredAt":{},"f:deliveryId":{},` +
		`"f:duration":{},"f:endpoint":{},"f:lastAttemptTime":{},"f:lastError":{},"f:lastStatusCode":{},` +
		`"f:nextAttemptTime":{},"f:phase":{},"f:reason":{}},`
	conditionFieldsTemplate = `"k:{\"type\":\"Reconciling\"}":{".":{},"f:lastTransitionTime":{},"f:message":{},` +
		`"f:observedGeneration":{},"f:reason":{},"f:status":{},"f:type":{}},`

	microTimeBytes = len("2006-01-02T15:04:05.000000Z")
	// maxDurationBytes is the longest time.Duration string, -2562047h47m16.854775808s.
	maxDurationBytes = 25
	// conditionTypes counts Delivered, Ready, Reconciling and Stalled.
	conditionTypes = 4
)

// maxDeliveryBytes is the most bytes one delivery can take as JSON beyond its endpoint name and id: its
// fields at their longest, lastError fully escaped.
const maxDeliveryBytes = len(deliveryTemplate) + maxReasonBytes + 3*microTimeBytes + maxDurationBytes +
	jsonEscapeFactor*webhooksv1alpha1.MaxDeliveryErrorLength

// maxStatusBytes is the most bytes the status of an event with these deliveries can take as stored,
// managedFields included, whatever the attempts write into it. lastRedeliveryRequest is the value of the
// redeliver-requested-at annotation the status copies.
func maxStatusBytes(deliveries []webhooksv1alpha1.EndpointDelivery, lastRedeliveryRequest string) int {
	return maxStatusJSONBytes(deliveries, lastRedeliveryRequest) + maxStatusFieldsBytes(deliveries)
}

// maxStatusJSONBytes bounds the status itself, as JSON.
func maxStatusJSONBytes(deliveries []webhooksv1alpha1.EndpointDelivery, lastRedeliveryRequest string) int {
	n := len(statusTemplate) + microTimeBytes + jsonEscapeFactor*len(lastRedeliveryRequest) +
		conditionTypes*(len(conditionTemplate)+maxReasonBytes+maxConditionMessageBytes)
	for i := range deliveries {
		// Object names and delivery ids hold no character that JSON escapes.
		n += maxDeliveryBytes + len(deliveries[i].Endpoint) + len(deliveries[i].DeliveryID)
	}
	return n
}

// maxStatusFieldsBytes bounds the operator's managedFields entry for the status, which lists each
// delivery under its endpoint name.
func maxStatusFieldsBytes(deliveries []webhooksv1alpha1.EndpointDelivery) int {
	n := len(statusFieldsTemplate) + maxFieldManagerBytes + conditionTypes*len(conditionFieldsTemplate)
	for i := range deliveries {
		n += len(deliveryFieldsTemplate) + len(deliveries[i].Endpoint)
	}
	return n
}

// storedEventBytes is the size of the event as etcd holds it, without its status and managedFields:
// the API server stores custom resources as JSON.
func storedEventBytes(ev *webhooksv1alpha1.DocumentEvent) (int, error) {
	stored := webhooksv1alpha1.DocumentEvent{ObjectMeta: ev.ObjectMeta, Spec: ev.Spec}
	stored.ManagedFields = nil
	stored.APIVersion, stored.Kind = webhooksv1alpha1.GroupVersion.String(), "DocumentEvent"
	raw, err := json.Marshal(&stored)
	if err != nil {
		return 0, fmt.Errorf("encode DocumentEvent to measure it: %w", err)
	}
	return len(raw), nil
}

// eventSize is what the size check found: the event as stored and the largest status it can need.
type eventSize struct {
	stored, status int
}

// fits reports whether the event leaves room for its largest status under maxStoredEventBytes.
func (z eventSize) fits() bool { return z.stored+z.status <= maxStoredEventBytes }

// measureEvent measures the event with the status its current deliveries can grow to.
func measureEvent(ev *webhooksv1alpha1.DocumentEvent) (eventSize, error) {
	stored, err := storedEventBytes(ev)
	if err != nil {
		return eventSize{}, err
	}
	return eventSize{
		stored: stored,
		status: maxStatusBytes(ev.Status.Deliveries, ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation]),
	}, nil
}

// tooLargeMessage explains a refusal: the sizes, the limit, and what to change.
func tooLargeMessage(z eventSize, deliveries int) string {
	return fmt.Sprintf("the event takes %d bytes as stored and its status can need %d more with %s, "+
		"over the %d bytes it may take (etcd stores objects of at most %d bytes, less %d for managedFields and a margin); "+
		"nothing was sent. Create it again with a smaller payload (for example fewer extractionErrors or smaller "+
		"extraction fields and tables) or with fewer matching endpoints",
		z.stored, z.status, delivery.Count(deliveries, "endpoint"), maxStoredEventBytes, etcdMaxRequestBytes, managedFieldsSlack+storeMarginBytes)
}
