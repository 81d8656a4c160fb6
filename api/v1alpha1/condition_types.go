package v1alpha1

// Condition types. Ready follows the kstatus convention for WebhookEndpoint; Delivered is what
// `kubectl wait --for=condition=Delivered documentevent/NAME` waits on.
const (
	// ReadyCondition reports whether a WebhookEndpoint can receive deliveries now.
	ReadyCondition string = "Ready"

	// DeliveredCondition reports whether a DocumentEvent reached every one of its target endpoints.
	DeliveredCondition string = "Delivered"

	// ReconcilingCondition (kstatus) is True while work is under way: an event with open deliveries,
	// or an endpoint whose circuit is open and will be probed. It is removed when done.
	ReconcilingCondition string = "Reconciling"

	// StalledCondition (kstatus) is True when progress needs a human: a Failed event, or an endpoint
	// whose spec or Secrets are unusable. It is removed otherwise.
	StalledCondition string = "Stalled"
)

// Reasons of the Ready condition of a WebhookEndpoint.
const (
	// ReadyReason means the URL is valid and the signing secret, if any, resolves.
	ReadyReason string = "Ready"

	// SecretNotFoundReason means spec.secretRef names a Secret that does not exist in the endpoint's
	// namespace. Deliveries wait; they are never sent unsigned.
	SecretNotFoundReason string = "SecretNotFound"

	// SecretKeyMissingReason means the referenced Secret exists but has no (or an empty) value at the key.
	SecretKeyMissingReason string = "SecretKeyMissing"

	// SecretInvalidReason means the signing secret cannot be used by the endpoint's scheme (for example
	// a whsec_ value that is not valid base64).
	SecretInvalidReason string = "SecretInvalid"

	// InvalidURLReason means spec.url passed admission but cannot be used (for example, an unparsable host).
	InvalidURLReason string = "InvalidURL"

	// SuspendedReason means spec.suspend is true; deliveries wait until it is cleared.
	SuspendedReason string = "Suspended"

	// InsecureURLReason means spec.url uses http while the manager runs with --require-https.
	InsecureURLReason string = "InsecureURL"

	// DestinationBlockedReason means the egress policy (--blocked-cidrs, --allowed-cidrs,
	// --block-private-networks) refuses the address spec.url resolves to. Deliveries wait until the
	// endpoint's spec changes.
	DestinationBlockedReason string = "DestinationBlocked"

	// TLSSecretNotFoundReason means a Secret named in spec.tls does not exist in the endpoint's namespace.
	TLSSecretNotFoundReason string = "TLSSecretNotFound"

	// TLSSecretInvalidReason means a Secret named in spec.tls lacks ca.crt, or tls.crt and tls.key.
	TLSSecretInvalidReason string = "TLSSecretInvalid"

	// CircuitOpenReason means the endpoint failed spec.circuitBreaker.failureThreshold attempts in a
	// row. Attempts pause until a probe after the cooldown succeeds; deliveries wait, none are dropped.
	CircuitOpenReason string = "CircuitOpen"
)

// Reasons of the Delivered condition of a DocumentEvent.
const (
	// NoEndpointsReason means no WebhookEndpoint in the namespace matches the event yet. The event waits
	// and goes to the first matching endpoints that appear.
	NoEndpointsReason string = "NoEndpoints"

	// DeliveringReason means at least one delivery is still pending or waiting for a retry.
	DeliveringReason string = "Delivering"

	// DeliverySucceededReason means every target endpoint answered with a 2xx status.
	DeliverySucceededReason string = "DeliverySucceeded"

	// DeliveryFailedReason means every delivery has finished and at least one of them failed.
	DeliveryFailedReason string = "DeliveryFailed"

	// InvalidSelectorReason means spec.endpointSelector cannot be parsed. The spec is immutable, so the
	// event fails without a retry.
	InvalidSelectorReason string = "InvalidSelector"

	// InvalidPayloadReason means the spec cannot be encoded as a webhook payload (for example, a value
	// that is not valid JSON). The event fails without a retry.
	InvalidPayloadReason string = "InvalidPayload"

	// TooManyEndpointsReason means more endpoints match the event than one event can record
	// (MaxDeliveriesPerEvent); narrow spec.endpointSelector or the endpoints' filters.
	TooManyEndpointsReason string = "TooManyEndpoints"

	// EventTooLargeReason means the event leaves too little room under etcd's 1.5 MiB object limit for
	// the largest status its deliveries can need, so that status could not be written. The event fails
	// before any attempt, and its deliveries fail with this reason; create it again with a smaller
	// payload or fewer matching endpoints. A redelivery refused for it leaves the event as it was.
	EventTooLargeReason string = "EventTooLarge"
)

// Reasons recorded on a single delivery (status.deliveries[].reason).
const (
	// AttemptFailedReason means the last attempt failed and another one is scheduled.
	AttemptFailedReason string = "AttemptFailed"

	// AttemptsExhaustedReason means spec.retry.maxAttempts attempts failed.
	AttemptsExhaustedReason string = "AttemptsExhausted"

	// EndpointDeletedReason means the target endpoint was deleted before the delivery succeeded.
	EndpointDeletedReason string = "EndpointDeleted"

	// RedeliveryRequestedReason means the delivery starts over because of the redeliver-requested-at
	// annotation.
	RedeliveryRequestedReason string = "RedeliveryRequested"

	// EndpointNotReadyReason means the delivery waits for its endpoint (missing secret, suspended, ...).
	EndpointNotReadyReason string = "EndpointNotReady"
)

// Secret keys the operator reads.
const (
	// DefaultSigningSecretKey is the Secret key read when spec.secretRef.key is empty.
	DefaultSigningSecretKey = "signingSecret"
	// PreviousSigningSecretKey optionally holds the key being rotated out. The standard-webhooks scheme
	// signs with both keys while it is present.
	PreviousSigningSecretKey = "previousSigningSecret"
	// CACertKey is the key of spec.tls.caSecretRef that holds PEM root certificates.
	CACertKey = "ca.crt"
)

// Reasons of the Kubernetes Events the controllers emit. They are stable so that alerts and
// `kubectl get events --field-selector reason=...` can rely on them. The happy path (a first attempt
// that succeeds) emits none, so it costs no extra API write.
const (
	// DeliveredAfterRetriesEvent is a Normal event on a DocumentEvent whose delivery succeeded after at
	// least one failed attempt.
	DeliveredAfterRetriesEvent string = "DeliveredAfterRetries"

	// DeliveryFailedEvent is a Warning event on a DocumentEvent whose delivery to one endpoint gave up
	// (attempts exhausted or endpoint deleted).
	DeliveryFailedEvent string = "DeliveryFailed"

	// EndpointNotReadyEvent is a Warning event on a WebhookEndpoint that became not ready; the note
	// carries the condition reason (SecretNotFound, SecretKeyMissing, InvalidURL, ...). A suspension is
	// not a fault: it emits SuspendedEvent instead.
	EndpointNotReadyEvent string = "EndpointNotReady"

	// EndpointReadyEvent is a Normal event on a WebhookEndpoint that became ready again.
	EndpointReadyEvent string = "EndpointReady"

	// SuspendedEvent is a Normal event on a WebhookEndpoint whose owner set spec.suspend; deliveries wait.
	SuspendedEvent string = "Suspended"

	// ResumedEvent is a Normal event on a suspended WebhookEndpoint whose spec.suspend was cleared. It
	// replaces EndpointReady for that change; an endpoint that is still not ready for another reason also
	// gets EndpointNotReady.
	ResumedEvent string = "Resumed"

	// SecretEndsWithNewlineEvent is a Warning event on a WebhookEndpoint whose signing secret ends in a
	// newline. The operator signs with the exact bytes, newline included, while receivers often trim it
	// and then reject every signature. It is emitted when the Ready message starts to carry the warning.
	SecretEndsWithNewlineEvent string = "SecretEndsWithNewline"

	// CircuitOpenedEvent is a Warning event on a WebhookEndpoint whose circuit opened.
	CircuitOpenedEvent string = "CircuitOpened"

	// CircuitClosedEvent is a Normal event on a WebhookEndpoint whose circuit closed after a success.
	CircuitClosedEvent string = "CircuitClosed"

	// InvalidTraceContextEvent is a Warning event on a DocumentEvent whose traceparent annotation is not
	// W3C Trace Context; the event is delivered in a trace of its own.
	InvalidTraceContextEvent string = "InvalidTraceContext"

	// EventTooLargeEvent is a Warning event on a DocumentEvent that was refused before any attempt (or
	// whose redelivery was refused) because it leaves too little room for its status, or whose status
	// write the API server refused as too large.
	EventTooLargeEvent string = "EventTooLarge"
)

// Annotations that request an action. Each action runs once per distinct value, so setting the
// annotation to a timestamp (as `kubectl webhook` does) requests it again.
const (
	// TestRequestedAtAnnotation on a WebhookEndpoint sends one sample document.ready payload (documentId
	// test_..., header X-Webhook-Test: true); the result goes to status.lastTest.
	TestRequestedAtAnnotation = "webhooks.1flow.io/test-requested-at"

	// RedeliverRequestedAtAnnotation on a DocumentEvent sends it again, with the same X-Webhook-Id and
	// fresh attempts, to all its targets or (see RedeliverScopeAnnotation) only to the failed ones.
	RedeliverRequestedAtAnnotation = "webhooks.1flow.io/redeliver-requested-at"

	// RedeliverScopeAnnotation limits a redelivery: "failed" redelivers only failed deliveries; "all"
	// (or absent) redelivers every delivery.
	RedeliverScopeAnnotation = "webhooks.1flow.io/redeliver-scope"

	// RedeliverScopeFailed is the value of RedeliverScopeAnnotation that limits a redelivery to failures.
	RedeliverScopeFailed = "failed"
)

// The Namespace label with which a cluster administrator lets a namespace's endpoints reach private
// addresses (--private-cidrs: RFC 1918, carrier-grade NAT, IPv6 unique-local by default), which the
// operator refuses otherwise. Tenants cannot label their own Namespace under normal RBAC.
const (
	// PrivateEgressLabel is the label key.
	PrivateEgressLabel = "webhooks.1flow.io/private-egress"
	// PrivateEgressAllowed is the value that allows private egress.
	PrivateEgressAllowed = "allowed"
)

// Annotations that carry the W3C Trace Context of the pipeline that created a DocumentEvent: its
// deliveries are traced under that span, and receivers get it in the traceparent header.
const (
	// TraceParentAnnotation holds a W3C traceparent, for example
	// 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.
	TraceParentAnnotation = "webhooks.1flow.io/traceparent"

	// TraceStateAnnotation holds the W3C tracestate that goes with TraceParentAnnotation.
	TraceStateAnnotation = "webhooks.1flow.io/tracestate"
)
