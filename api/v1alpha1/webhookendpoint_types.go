package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EventType names a kind of webhook event.
// +kubebuilder:validation:Enum=document.ready
type EventType string

// DocumentReadyEvent is sent when a document is fully processed and indexed.
const DocumentReadyEvent EventType = "document.ready"

// Defaults applied by the getters below; the CRD schema carries the same values as +kubebuilder:default
// so that objects read back from the API server show them.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxAttempts      = 15
	DefaultInitialInterval  = 5 * time.Second
	DefaultMaxInterval      = time.Hour
	DefaultMaxInFlight      = 16
	DefaultFailureThreshold = 10
	DefaultCooldown         = 30 * time.Second
)

// WebhookEndpointSpec defines one receiver of document webhooks.
// +kubebuilder:validation:XValidation:rule="!has(self.retry) || !has(self.retry.initialInterval) || !has(self.retry.maxInterval) || duration(self.retry.initialInterval) <= duration(self.retry.maxInterval)",message="retry.initialInterval must not exceed retry.maxInterval"
type WebhookEndpointSpec struct {
	// URL is the absolute http(s) address that receives the POST requests.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an absolute http or https URL with a host"
	URL string `json:"url"`

	// SecretRef names the Secret, in the endpoint's namespace, that holds the signing secret. When set,
	// every request carries X-Webhook-Timestamp and X-Webhook-Signature; a missing Secret or key makes
	// deliveries wait rather than go out unsigned.
	// +optional
	SecretRef *SecretKeyReference `json:"secretRef,omitempty"`

	// EventTypes limits the events sent to this endpoint. Empty means all event types.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	EventTypes []EventType `json:"eventTypes,omitempty"`

	// DocTypes limits deliveries to events whose spec.documentStatus.docType is in this list
	// (for example INVOICE, RECEIPT). Empty means all document types, including events with no docType.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	DocTypes []string `json:"docTypes,omitempty"`

	// Timeout bounds one delivery attempt: connecting, sending and reading the response headers.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('60s')",message="timeout must be greater than 0s and at most 60s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retry configures how failed attempts are retried.
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`

	// Suspend pauses deliveries to this endpoint. Deliveries wait while it is true; none are dropped.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// MaxInFlight bounds the attempts in flight to this endpoint at once, and so the connections the
	// operator opens to it. Further attempts queue; a slow endpoint only ever holds this many of the
	// operator's global in-flight slots (--max-in-flight).
	// +optional
	// +kubebuilder:default=16
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	MaxInFlight int32 `json:"maxInFlight,omitempty"`

	// RateLimit bounds the rate of requests to this endpoint, for receivers behind a gateway with a
	// request quota. Attempts above the rate wait in the operator and are not counted as attempts. Unset
	// means no limit: only maxInFlight bounds the endpoint. Independently of it, a 429 or 503 response
	// with Retry-After pauses every delivery to the endpoint for that long (at most
	// retry.maxInterval), not only the delivery that received it.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// CircuitBreaker pauses attempts to an endpoint that keeps failing.
	// +optional
	CircuitBreaker *CircuitBreakerPolicy `json:"circuitBreaker,omitempty"`

	// Signature selects how requests are signed.
	// +optional
	Signature *SignaturePolicy `json:"signature,omitempty"`

	// TLS configures a private CA and a client certificate for https URLs. There is deliberately no way
	// to skip certificate verification.
	// +optional
	TLS *EndpointTLS `json:"tls,omitempty"`
}

// RateLimit is a token bucket: it holds up to burst requests and refills at requestsPerSecond, and
// every request takes one. After a quiet period a burst of requests goes out at once; under sustained
// load the endpoint receives requestsPerSecond.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate, a whole number of requests per second, as the quotas of
	// API gateways and the rate limits of other webhook platforms are expressed.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	RequestsPerSecond int32 `json:"requestsPerSecond"`

	// Burst is how many requests may go out at once above the sustained rate after a quiet period.
	// Unset means requestsPerSecond: at most one second's worth of requests at once.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Burst int32 `json:"burst,omitempty"`
}

// SignatureScheme names a request signing scheme.
// +kubebuilder:validation:Enum="1flow";"standard-webhooks"
type SignatureScheme string

// Signature schemes.
const (
	// SignatureScheme1Flow sends X-Webhook-Timestamp (Unix milliseconds) and X-Webhook-Signature (hex
	// HMAC-SHA256 of timestamp + body), signed with the current key only.
	SignatureScheme1Flow SignatureScheme = "1flow"
	// SignatureSchemeStandardWebhooks sends webhook-id, webhook-timestamp and webhook-signature as the
	// Standard Webhooks specification defines; during a key rotation it carries both signatures.
	SignatureSchemeStandardWebhooks SignatureScheme = "standard-webhooks"
)

// SignaturePolicy configures request signing.
type SignaturePolicy struct {
	// Scheme is the signing scheme.
	// +optional
	// +kubebuilder:default="1flow"
	Scheme SignatureScheme `json:"scheme,omitempty"`
}

// EndpointTLS names Secrets, in the endpoint's namespace, with TLS material for the receiver.
type EndpointTLS struct {
	// CASecretRef names a Secret whose key ca.crt holds PEM root certificates trusted in addition to the
	// system roots, for receivers with a private CA.
	// +optional
	CASecretRef *LocalSecretReference `json:"caSecretRef,omitempty"`

	// ClientCertSecretRef names a kubernetes.io/tls Secret (keys tls.crt and tls.key) presented as the
	// client certificate, for receivers that require mutual TLS.
	// +optional
	ClientCertSecretRef *LocalSecretReference `json:"clientCertSecretRef,omitempty"`
}

// LocalSecretReference names a Secret in the referring object's namespace.
type LocalSecretReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// CircuitBreakerPolicy opens the circuit after failureThreshold consecutive failed attempts: new attempts
// pause (deliveries wait, none are dropped) until one probe attempt is made after the cooldown. The
// first success closes the circuit again.
type CircuitBreakerPolicy struct {
	// FailureThreshold is the number of consecutive failed attempts that opens the circuit.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// Cooldown is how long the circuit stays open before a probe attempt.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1h')",message="cooldown must be between 10ms and 1h"
	Cooldown *metav1.Duration `json:"cooldown,omitempty"`
}

// SecretKeyReference names one key of a Secret in the referring object's namespace.
type SecretKeyReference struct {
	// Name of the Secret. It must be in the same namespace as the WebhookEndpoint.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Key in the Secret's data that holds the signing secret.
	// +optional
	// +kubebuilder:default=signingSecret
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[-._a-zA-Z0-9]+$"
	Key string `json:"key,omitempty"`
}

// RetryPolicy is an exponential backoff: the n-th retry waits initialInterval * 2^(n-1), capped at
// maxInterval, with about ±20% jitter.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first one included, before a delivery is Failed.
	// +optional
	// +kubebuilder:default=15
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	MaxAttempts int32 `json:"maxAttempts,omitempty"`

	// InitialInterval is the wait before the first retry.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms')",message="initialInterval must be at least 10ms"
	InitialInterval *metav1.Duration `json:"initialInterval,omitempty"`

	// MaxInterval caps the wait between two attempts.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('24h')",message="maxInterval must be between 10ms and 24h"
	MaxInterval *metav1.Duration `json:"maxInterval,omitempty"`
}

// WebhookEndpointStatus is the observed state of a WebhookEndpoint.
type WebhookEndpointStatus struct {
	// ObservedGeneration is the last generation of the spec that the controller acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// URL is spec.url with its user information, query values and fragment replaced by ***, for display:
	// the URL column of `kubectl get webhookendpoints` shows it, so that credentials in the URL do not
	// appear on screen or in logs. spec.url keeps the full URL.
	// +optional
	URL string `json:"url,omitempty"`

	// Conditions holds the Ready condition.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastDelivery summarizes the most recent delivery attempt to this endpoint.
	// +optional
	LastDelivery *LastDelivery `json:"lastDelivery,omitempty"`

	// ConsecutiveFailures counts failed attempts since the last successful one.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// RetryAfterUntil is the end of the latest pause the receiver asked for with Retry-After on a 429
	// or 503 answer (capped by spec.retry.maxInterval): no delivery starts before it, also after the
	// operator restarts or another replica takes over.
	// +optional
	RetryAfterUntil *metav1.Time `json:"retryAfterUntil,omitempty"`

	// LastTest is the result of the most recent test webhook (the webhooks.1flow.io/test-requested-at
	// annotation).
	// +optional
	LastTest *TestResult `json:"lastTest,omitempty"`
}

// TestResult is the outcome of one test webhook.
type TestResult struct {
	// RequestedAt is the annotation value that requested this test; a test runs once per value.
	// +required
	RequestedAt string `json:"requestedAt"`

	// Time is when the test request was sent.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`

	// StatusCode is the HTTP status of the response; 0 when none was received.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// Duration is how long the test took, to the microsecond.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// Success is true when the receiver answered with a 2xx status.
	// +optional
	Success bool `json:"success,omitempty"`

	// Error explains a failure, truncated; it never holds a secret or URL credentials.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Error string `json:"error,omitempty"`
}

// LastDelivery is the outcome of the most recent attempt to an endpoint.
type LastDelivery struct {
	// Event is the name of the DocumentEvent that was sent.
	// +required
	Event string `json:"event"`

	// Time is when the attempt started.
	// +required
	Time metav1.Time `json:"time"`

	// StatusCode is the HTTP status of the response; 0 when none was received.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// Duration is how long the attempt took, to the microsecond.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// Success is true when the receiver answered with a 2xx status.
	// +required
	Success bool `json:"success"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whe,categories=webhooks
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Last delivery",type=date,JSONPath=`.status.lastDelivery.time`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// WebhookEndpoint is one receiver of an organization's document webhooks.
type WebhookEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec defines where and how deliveries are sent.
	// +required
	Spec WebhookEndpointSpec `json:"spec"`

	// Status reports readiness and the last delivery.
	// +optional
	// +kubebuilder:default={"observedGeneration":-1}
	Status WebhookEndpointStatus `json:"status,omitempty"`
}

// GetTimeout returns the attempt timeout, defaulted.
func (in *WebhookEndpoint) GetTimeout() time.Duration {
	if in.Spec.Timeout == nil || in.Spec.Timeout.Duration <= 0 {
		return DefaultTimeout
	}
	return in.Spec.Timeout.Duration
}

// GetMaxAttempts returns the attempt budget, defaulted.
func (in *WebhookEndpoint) GetMaxAttempts() int32 {
	if in.Spec.Retry == nil || in.Spec.Retry.MaxAttempts <= 0 {
		return DefaultMaxAttempts
	}
	return in.Spec.Retry.MaxAttempts
}

// GetInitialInterval returns the wait before the first retry, defaulted.
func (in *WebhookEndpoint) GetInitialInterval() time.Duration {
	if in.Spec.Retry == nil || in.Spec.Retry.InitialInterval == nil || in.Spec.Retry.InitialInterval.Duration <= 0 {
		return DefaultInitialInterval
	}
	return in.Spec.Retry.InitialInterval.Duration
}

// GetMaxInterval returns the cap on the wait between attempts, defaulted.
func (in *WebhookEndpoint) GetMaxInterval() time.Duration {
	if in.Spec.Retry == nil || in.Spec.Retry.MaxInterval == nil || in.Spec.Retry.MaxInterval.Duration <= 0 {
		return DefaultMaxInterval
	}
	return in.Spec.Retry.MaxInterval.Duration
}

// GetMaxInFlight returns the per-endpoint in-flight bound, defaulted.
func (in *WebhookEndpoint) GetMaxInFlight() int {
	if in.Spec.MaxInFlight <= 0 {
		return DefaultMaxInFlight
	}
	return int(in.Spec.MaxInFlight)
}

// GetRateLimit returns the endpoint's rate limit with the burst defaulted; limited is false when there
// is none.
func (in *WebhookEndpoint) GetRateLimit() (requestsPerSecond, burst int, limited bool) {
	rl := in.Spec.RateLimit
	if rl == nil || rl.RequestsPerSecond <= 0 {
		return 0, 0, false
	}
	if rl.Burst <= 0 {
		return int(rl.RequestsPerSecond), int(rl.RequestsPerSecond), true
	}
	return int(rl.RequestsPerSecond), int(rl.Burst), true
}

// GetFailureThreshold returns the consecutive failures that open the circuit, defaulted.
func (in *WebhookEndpoint) GetFailureThreshold() int32 {
	if in.Spec.CircuitBreaker == nil || in.Spec.CircuitBreaker.FailureThreshold <= 0 {
		return DefaultFailureThreshold
	}
	return in.Spec.CircuitBreaker.FailureThreshold
}

// GetCooldown returns how long an open circuit waits before a probe, defaulted.
func (in *WebhookEndpoint) GetCooldown() time.Duration {
	if in.Spec.CircuitBreaker == nil || in.Spec.CircuitBreaker.Cooldown == nil || in.Spec.CircuitBreaker.Cooldown.Duration <= 0 {
		return DefaultCooldown
	}
	return in.Spec.CircuitBreaker.Cooldown.Duration
}

// GetSignatureScheme returns the signing scheme, defaulted.
func (in *WebhookEndpoint) GetSignatureScheme() SignatureScheme {
	if in.Spec.Signature == nil || in.Spec.Signature.Scheme == "" {
		return SignatureScheme1Flow
	}
	return in.Spec.Signature.Scheme
}

// GetSecretKey returns the Secret key that holds the signing secret, defaulted.
func (in *WebhookEndpoint) GetSecretKey() string {
	if in.Spec.SecretRef == nil || in.Spec.SecretRef.Key == "" {
		return DefaultSigningSecretKey
	}
	return in.Spec.SecretRef.Key
}

// GetConditions returns the status conditions; it lets generic helpers read them.
func (in *WebhookEndpoint) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *WebhookEndpoint) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}

// +kubebuilder:object:root=true

// WebhookEndpointList contains a list of WebhookEndpoint.
type WebhookEndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookEndpoint `json:"items"`
}
