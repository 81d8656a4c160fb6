package v1alpha1

import (
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DocumentEventSpec is the content of one document webhook. It maps one to one onto the JSON payload
// that receivers get, and it cannot change once created: redelivery is a separate, explicit act.
type DocumentEventSpec struct {
	// Event is the event type sent as the payload's "event" field.
	// +optional
	// +kubebuilder:default="document.ready"
	Event EventType `json:"event,omitempty"`

	// DocumentID identifies the document; it is sent as "documentId".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	DocumentID string `json:"documentId"`

	// DocumentStatus is sent as the payload's "status" object.
	// +optional
	DocumentStatus DocumentStatus `json:"documentStatus,omitempty"`

	// Document is the document summary. When absent the payload carries "document": null.
	// +optional
	Document *DocumentSummary `json:"document,omitempty"`

	// Extraction holds the extracted data. When absent the payload carries "extraction": null.
	// +optional
	Extraction *Extraction `json:"extraction,omitempty"`

	// EndpointSelector selects the WebhookEndpoints, in the event's namespace, that receive this event.
	// Unset means every endpoint of the namespace (subject to each endpoint's own filters).
	// +optional
	EndpointSelector *metav1.LabelSelector `json:"endpointSelector,omitempty"`

	// TTLSecondsAfterFinished deletes the event this many seconds after it is Delivered or Failed, as Jobs
	// do, so that pipelines creating millions of events do not fill etcd. Unset uses the manager's
	// --default-ttl-after-finished (off unless set); 0 deletes it as soon as it finishes.
	// +optional
	// +kubebuilder:validation:Minimum=0
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// DocumentStatus is the processing status of the document.
type DocumentStatus struct {
	// ExtractionStatus is the extraction state of the document.
	// +optional
	// +kubebuilder:default=INDEXED
	// +kubebuilder:validation:MaxLength=64
	ExtractionStatus string `json:"extractionStatus,omitempty"`

	// DocType is the document type name (for example INVOICE, RECEIPT, BANK_STATEMENT). Null when unknown.
	// +optional
	// +nullable
	// +kubebuilder:validation:MaxLength=128
	DocType *string `json:"docType,omitempty"`

	// The date rules below never call timestamp(): it fails at run time on a date that does not exist
	// (2024-02-30), and the API server then reports a CEL type conversion error instead of the value. The
	// regular expression bounds every field, the month lengths are checked on the digits it matched, and
	// the && after it stops evaluation of what could fail; messageExpression says which part is wrong.

	// CreatedAt is when the document was created, RFC 3339. Defaults to the event's creationTimestamp.
	// A date that does not exist, such as 2024-02-30, is refused.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$') && !(self.substring(5, 10) in ['02-30', '02-31', '04-31', '06-31', '09-31', '11-31']) && (self.substring(5, 10) != '02-29' || int(self.substring(0, 4)) % 4 == 0 && (int(self.substring(0, 4)) % 100 != 0 || int(self.substring(0, 4)) % 400 == 0))",message="createdAt must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z",messageExpression="'createdAt must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z' + (!self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$') ? '' : !self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$') ? ' (months are 01-12, days 01-31, hours 00-23, minutes and seconds 00-59, UTC offsets at most 23:59)' : ' (' + ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'][int(self.substring(5, 7)) - 1] + ' ' + self.substring(0, 4) + ' has ' + (self.substring(5, 7) == '02' ? (int(self.substring(0, 4)) % 4 == 0 && (int(self.substring(0, 4)) % 100 != 0 || int(self.substring(0, 4)) % 400 == 0) ? '29' : '28') : self.substring(5, 7) in ['04', '06', '09', '11'] ? '30' : '31') + ' days)')"
	CreatedAt string `json:"createdAt,omitempty"`

	// UpdatedAt is when the document was last updated, RFC 3339. Defaults to the event's creationTimestamp.
	// A date that does not exist, such as 2024-02-30, is refused.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$') && !(self.substring(5, 10) in ['02-30', '02-31', '04-31', '06-31', '09-31', '11-31']) && (self.substring(5, 10) != '02-29' || int(self.substring(0, 4)) % 4 == 0 && (int(self.substring(0, 4)) % 100 != 0 || int(self.substring(0, 4)) % 400 == 0))",message="updatedAt must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z",messageExpression="'updatedAt must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z' + (!self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$') ? '' : !self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$') ? ' (months are 01-12, days 01-31, hours 00-23, minutes and seconds 00-59, UTC offsets at most 23:59)' : ' (' + ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'][int(self.substring(5, 7)) - 1] + ' ' + self.substring(0, 4) + ' has ' + (self.substring(5, 7) == '02' ? (int(self.substring(0, 4)) % 4 == 0 && (int(self.substring(0, 4)) % 100 != 0 || int(self.substring(0, 4)) % 400 == 0) ? '29' : '28') : self.substring(5, 7) in ['04', '06', '09', '11'] ? '30' : '31') + ' days)')"
	UpdatedAt string `json:"updatedAt,omitempty"`

	// ExtractionErrors lists the extraction errors. Absent or null is sent as null.
	// +optional
	// +nullable
	// +kubebuilder:validation:MaxItems=1000
	ExtractionErrors []apiextensionsv1.JSON `json:"extractionErrors,omitempty"`
}

// Decimal is a decimal number kept as its exact text, sent to receivers as a JSON number. In a manifest
// it is a JSON number or a string holding one (see DocumentSummary.TotalAmount for what the API server
// keeps of each). Go clients write it as a string, which keeps every digit: Decimal has no MarshalJSON,
// so Decimal("0.10") is stored as "0.10" and reaches receivers as 0.10.
type Decimal string

// UnmarshalJSON reads a JSON number or a string holding one, keeping its text as written, so that no
// digit passes through a float; null leaves the value unchanged.
func (d *Decimal) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var number json.Number // json.Number takes a number literal or a string holding one, and keeps its text
	if err := json.Unmarshal(data, &number); err != nil {
		return fmt.Errorf("a decimal must be a JSON number or a string holding one: %w", err)
	}
	*d = Decimal(number)
	return nil
}

// DocumentSummary is the document summary information. A member that is absent or null is sent as
// null: the payload always has description, totalAmount and documentDate.
type DocumentSummary struct {
	// Description is the document description or title. Absent or null is sent as null, and "" as "".
	// +optional
	// +nullable
	// +kubebuilder:validation:MaxLength=4096
	Description *string `json:"description,omitempty"`

	// TotalAmount is the total amount extracted from the document, sent as a JSON number. Write it as a
	// number (totalAmount: 1234.56) or as a decimal string (totalAmount: "1234.56"); absent or null is
	// sent as null. A string holds a JSON number of at most 64 characters: no thousands separators,
	// currency or spaces.
	//
	// A string keeps every digit and its notation: "0.10" is sent as 0.10, and
	// "12345678901234567890.123456789" as written. The API server stores a number as a 64-bit integer
	// when it is an integer that fits (every digit kept) and otherwise as a 64-bit float, which it
	// writes back in the shortest form: 1234.56 stays 1234.56, but 0.10 becomes 0.1,
	// 1e3 becomes 1000, 1234567890.123456789 becomes 1234567890.1234567 and 12345678901234567890
	// becomes 12345678901234567000. Write amounts with more than 15 significant digits, or whose notation
	// matters, as a quoted string.
	//
	// Go clients write the string form. So a Go client that reads an event created with a number and
	// updates the whole object sends a string back, which the immutable spec rejects; change labels or
	// annotations with a patch instead.
	// +optional
	// +nullable
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	TotalAmount *Decimal `json:"totalAmount,omitempty"` // validated by hack/decimal-schema, which controller-gen cannot do

	// DocumentDate is the document date, YYYY-MM-DD. Absent or null is sent as null. A date that does
	// not exist, such as 2024-02-30, is refused.
	// +optional
	// +nullable
	// +kubebuilder:validation:MaxLength=10
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$') && !(self.substring(5, 10) in ['02-30', '02-31', '04-31', '06-31', '09-31', '11-31']) && (self.substring(5, 10) != '02-29' || int(self.substring(0, 4)) % 4 == 0 && (int(self.substring(0, 4)) % 100 != 0 || int(self.substring(0, 4)) % 400 == 0))",message="documentDate must be a calendar date in YYYY-MM-DD format",messageExpression="'documentDate must be a calendar date in YYYY-MM-DD format' + (!self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}$') ? '' : !self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$') ? ' (months are 01-12, days 01-31)' : ' (' + ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'][int(self.substring(5, 7)) - 1] + ' ' + self.substring(0, 4) + ' has ' + (self.substring(5, 7) == '02' ? (int(self.substring(0, 4)) % 4 == 0 && (int(self.substring(0, 4)) % 100 != 0 || int(self.substring(0, 4)) % 400 == 0) ? '29' : '28') : self.substring(5, 7) in ['04', '06', '09', '11'] ? '30' : '31') + ' days)')"
	DocumentDate string `json:"documentDate,omitempty"`
}

// Extraction holds the data extracted from the document.
type Extraction struct {
	// Fields holds the header fields extracted from the document, as a free-form JSON object.
	// +optional
	// +nullable
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Fields *apiextensionsv1.JSON `json:"fields,omitempty"`

	// Tables holds the line items and tables, as a free-form JSON object; tables.items is the line-item array.
	// +optional
	// +nullable
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Tables *apiextensionsv1.JSON `json:"tables,omitempty"`
}

// DocumentEventPhase summarizes the deliveries of an event.
// +kubebuilder:validation:Enum=Pending;Delivering;Delivered;Failed
type DocumentEventPhase string

// Phases of a DocumentEvent.
const (
	// DocumentEventPending means no attempt was made yet (for example, no endpoint matches yet).
	DocumentEventPending DocumentEventPhase = "Pending"
	// DocumentEventDelivering means at least one delivery is in progress or waiting for a retry.
	DocumentEventDelivering DocumentEventPhase = "Delivering"
	// DocumentEventDelivered means every target endpoint received the event.
	DocumentEventDelivered DocumentEventPhase = "Delivered"
	// DocumentEventFailed means every delivery finished and at least one failed.
	DocumentEventFailed DocumentEventPhase = "Failed"
)

// IsFinished reports whether every delivery of the event ended.
func (p DocumentEventPhase) IsFinished() bool {
	return p == DocumentEventDelivered || p == DocumentEventFailed
}

// DeliveryPhase is the state of the delivery of one event to one endpoint.
// +kubebuilder:validation:Enum=Pending;Retrying;Delivered;Failed
type DeliveryPhase string

// Phases of a single delivery.
const (
	// DeliveryPending means no attempt was made yet.
	DeliveryPending DeliveryPhase = "Pending"
	// DeliveryRetrying means an attempt failed and another one is scheduled at nextAttemptTime.
	DeliveryRetrying DeliveryPhase = "Retrying"
	// DeliveryDelivered means the endpoint answered with a 2xx status.
	DeliveryDelivered DeliveryPhase = "Delivered"
	// DeliveryFailed means the delivery gave up (attempts exhausted or endpoint deleted).
	DeliveryFailed DeliveryPhase = "Failed"
)

// IsFinal reports whether no further attempt will be made.
func (p DeliveryPhase) IsFinal() bool { return p == DeliveryDelivered || p == DeliveryFailed }

// EndpointDelivery is the state of the delivery of this event to one endpoint.
type EndpointDelivery struct {
	// Endpoint is the name of the target WebhookEndpoint, in the event's namespace.
	// +required
	Endpoint string `json:"endpoint"`

	// DeliveryID is sent as X-Webhook-Id; it is the same for every attempt to this endpoint, so receivers
	// can de-duplicate.
	// +required
	DeliveryID string `json:"deliveryId"`

	// Phase is the state of this delivery.
	// +required
	Phase DeliveryPhase `json:"phase"`

	// Reason is a CamelCase word that explains the phase.
	// +optional
	Reason string `json:"reason,omitempty"`

	// Attempts counts the attempts made so far.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// LastAttemptTime is when the last attempt started.
	// +optional
	LastAttemptTime *metav1.MicroTime `json:"lastAttemptTime,omitempty"`

	// NextAttemptTime is when the next attempt is due, while the phase is Retrying; while the endpoint's
	// circuit is open (reason CircuitOpen), the time of its next probe.
	// +optional
	NextAttemptTime *metav1.MicroTime `json:"nextAttemptTime,omitempty"`

	// LastStatusCode is the HTTP status of the last response; 0 when none was received.
	// +optional
	LastStatusCode int32 `json:"lastStatusCode,omitempty"`

	// LastError describes why the last attempt failed, truncated. It never holds a secret, a URL query or
	// URL user information.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	LastError string `json:"lastError,omitempty"`

	// DeliveredAt is when the endpoint acknowledged the event.
	// +optional
	DeliveredAt *metav1.MicroTime `json:"deliveredAt,omitempty"`

	// Duration is how long the last attempt took, to the microsecond (for example "412µs" or "1.2034s").
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// Limits of the status schema; the controller keeps every status write within them, so that no patch
// is rejected by the API server.
const (
	// MaxDeliveriesPerEvent is the most endpoints one event can target (status.deliveries maxItems).
	MaxDeliveriesPerEvent = 256
	// MaxDeliveryErrorLength is the maxLength of status.deliveries[].lastError and status.lastTest.error.
	MaxDeliveryErrorLength = 512
	// MaxConditionMessageLength is the maxLength of metav1.Condition's message.
	MaxConditionMessageLength = 32768
)

// DocumentEventStatus is the observed state of a DocumentEvent.
type DocumentEventStatus struct {
	// ObservedGeneration is the last generation the controller acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase summarizes the deliveries.
	// +optional
	Phase DocumentEventPhase `json:"phase,omitempty"`

	// Deliveries holds one entry per target endpoint.
	// +optional
	// +listType=map
	// +listMapKey=endpoint
	// +kubebuilder:validation:MaxItems=256
	Deliveries []EndpointDelivery `json:"deliveries,omitempty"`

	// Conditions holds Delivered and the kstatus conditions Ready, Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// CompletionTime is when the event became Delivered or Failed; ttlSecondsAfterFinished counts from it.
	// It is cleared when a redelivery reopens the event.
	// +optional
	CompletionTime *metav1.MicroTime `json:"completionTime,omitempty"`

	// LastRedeliveryRequest is the value of the webhooks.1flow.io/redeliver-requested-at annotation that
	// was last acted on; a redelivery runs once per value.
	// +optional
	LastRedeliveryRequest string `json:"lastRedeliveryRequest,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=de,categories=webhooks
// +kubebuilder:printcolumn:name="Document",type=string,JSONPath=`.spec.documentId`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.documentStatus.docType`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:selectablefield:JSONPath=`.spec.documentId`
// +kubebuilder:selectablefield:JSONPath=`.spec.documentStatus.docType`
// +kubebuilder:selectablefield:JSONPath=`.status.phase`

// DocumentEvent is one processed document whose webhook is delivered to the matching endpoints.
type DocumentEvent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the webhook content; it is immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable; create a new DocumentEvent instead"
	Spec DocumentEventSpec `json:"spec"`

	// Status records every delivery of the event.
	// +optional
	// +kubebuilder:default={"observedGeneration":-1}
	Status DocumentEventStatus `json:"status,omitempty"`
}

// GetEvent returns the event type, defaulted.
func (in *DocumentEvent) GetEvent() EventType {
	if in.Spec.Event == "" {
		return DocumentReadyEvent
	}
	return in.Spec.Event
}

// GetExtractionStatus returns the extraction status, defaulted.
func (in *DocumentEvent) GetExtractionStatus() string {
	if in.Spec.DocumentStatus.ExtractionStatus == "" {
		return "INDEXED"
	}
	return in.Spec.DocumentStatus.ExtractionStatus
}

// GetCreatedAt returns spec.documentStatus.createdAt, defaulted to the object's creationTimestamp.
func (in *DocumentEvent) GetCreatedAt() string {
	if in.Spec.DocumentStatus.CreatedAt != "" {
		return in.Spec.DocumentStatus.CreatedAt
	}
	return in.creationTimestampRFC3339()
}

// GetUpdatedAt returns spec.documentStatus.updatedAt, defaulted to the object's creationTimestamp.
func (in *DocumentEvent) GetUpdatedAt() string {
	if in.Spec.DocumentStatus.UpdatedAt != "" {
		return in.Spec.DocumentStatus.UpdatedAt
	}
	return in.creationTimestampRFC3339()
}

func (in *DocumentEvent) creationTimestampRFC3339() string {
	return in.CreationTimestamp.UTC().Format("2006-01-02T15:04:05Z07:00")
}

// GetDelivery returns the delivery to the named endpoint, or nil.
func (in *DocumentEvent) GetDelivery(endpoint string) *EndpointDelivery {
	for i := range in.Status.Deliveries {
		if in.Status.Deliveries[i].Endpoint == endpoint {
			return &in.Status.Deliveries[i]
		}
	}
	return nil
}

// GetConditions returns the status conditions.
func (in *DocumentEvent) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *DocumentEvent) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}

// +kubebuilder:object:root=true

// DocumentEventList contains a list of DocumentEvent.
type DocumentEventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DocumentEvent `json:"items"`
}
