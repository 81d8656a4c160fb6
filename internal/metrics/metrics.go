// Package metrics defines the operator's Prometheus metrics. They are registered on controller-runtime's
// registry and served on the manager's metrics endpoint (HTTPS with authentication and authorization by
// default, --metrics-bind-address).
//
// Every metric has the webhook_operator_ prefix and only bounded labels: no namespace, endpoint or
// document labels, so their cardinality does not grow with tenants or traffic.
//
//	webhook_operator_deliveries_total{result, code_class}
//	    Delivery attempts. result: success, failure, blocked (refused by the egress policy).
//	    code_class: 2xx, 3xx, 4xx, 5xx, or none (no HTTP response: timeout, connection error, blocked).
//	webhook_operator_delivery_duration_seconds{result}
//	    Histogram of attempt durations, from the start of the request to the end of the response.
//	webhook_operator_delivery_attempts{result}
//	    Histogram of attempts per finished delivery. result: delivered, failed.
//	webhook_operator_pending_deliveries
//	    Deliveries that are not finished (pending, in flight, or waiting for a retry).
//	webhook_operator_oldest_pending_delivery_age_seconds
//	    Age of the oldest DocumentEvent that still has a pending delivery: the backlog age. 0 when none.
//	webhook_operator_open_circuits
//	    Endpoints whose circuit breaker is open or probing.
//	webhook_operator_test_deliveries_total{result}
//	    Test webhooks sent on request (the webhooks.1flow.io/test-requested-at annotation). result: success, failure.
//	webhook_operator_rate_limit_wait_seconds_total{reason}
//	    Seconds endpoints' next attempts waited to start, summed over endpoints. reason: rate_limit (the
//	    endpoint's spec.rateLimit), retry_after (a receiver's Retry-After paused the endpoint).
//	webhook_operator_events_refused_total{reason}
//	    DocumentEvents (or their redeliveries) refused before any attempt. reason: too_large (the event
//	    leaves too little room under etcd's object limit for its status).
package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric names, for the code that reads or records them.
const (
	DeliveriesTotal         = "webhook_operator_deliveries_total"
	DeliveryDuration        = "webhook_operator_delivery_duration_seconds"
	DeliveryAttempts        = "webhook_operator_delivery_attempts"
	PendingDeliveries       = "webhook_operator_pending_deliveries"
	OldestPendingAgeSeconds = "webhook_operator_oldest_pending_delivery_age_seconds"
	OpenCircuits            = "webhook_operator_open_circuits"
	TestDeliveriesTotal     = "webhook_operator_test_deliveries_total"
	RateLimitWaitSeconds    = "webhook_operator_rate_limit_wait_seconds_total"
	CachedObjects           = "webhook_operator_cached_objects"
	EventsRefusedTotal      = "webhook_operator_events_refused_total"
)

const resultLabel = "result"

var (
	deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: DeliveriesTotal,
		Help: "Delivery attempts, by result (success, failure, blocked) and HTTP status class (2xx..5xx, none).",
	}, []string{resultLabel, "code_class"})

	duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    DeliveryDuration,
		Help:    "Duration of delivery attempts in seconds, by result.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{resultLabel})

	attempts = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    DeliveryAttempts,
		Help:    "Attempts per finished delivery, by result (delivered, failed).",
		Buckets: []float64{1, 2, 3, 5, 8, 10, 15, 20, 30, 50},
	}, []string{resultLabel})

	tests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: TestDeliveriesTotal,
		Help: "Test webhooks sent on request, by result (success, failure).",
	}, []string{resultLabel})

	rateLimitWait = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: RateLimitWaitSeconds,
		Help: "Seconds endpoints' next attempts waited to start, summed over endpoints, by reason: " +
			"rate_limit (spec.rateLimit) or retry_after (a receiver's Retry-After paused the endpoint).",
	}, []string{"reason"})

	refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: EventsRefusedTotal,
		Help: "DocumentEvents (or their redeliveries) refused before any attempt, by reason: " +
			"too_large (too little room under etcd's object limit for the event's status).",
	}, []string{"reason"})
)

// recordedCollectors are registered when the package loads; the backlog gauges wait for a Backlog
// (RegisterBacklog).
var recordedCollectors = []prometheus.Collector{deliveries, duration, attempts, tests, rateLimitWait, refused}

// Names lists every metric this package registers, so tests can check that the docs, alerts and
// dashboards only use metrics that exist. It is read from the descriptions of the collectors that init
// and RegisterBacklog register, so a new metric cannot be left out.
var Names []string

func init() {
	crmetrics.Registry.MustRegister(recordedCollectors...)
	// In init, not in Names' declaration: the backlog descriptions must be initialized first.
	Names = describedNames(append(recordedCollectors, &backlogCollector{})...)
}

func describedNames(collectors ...prometheus.Collector) []string {
	descs := make(chan *prometheus.Desc)
	go func() {
		for _, c := range collectors {
			c.Describe(descs)
		}
		close(descs)
	}()
	var names []string
	for d := range descs {
		// Desc keeps its name unexported; its String form starts with it, quoted.
		var name string
		if _, err := fmt.Sscanf(d.String(), "Desc{fqName: %q", &name); err != nil {
			panic(fmt.Sprintf("metrics: no name in %s: %v", d, err))
		}
		names = append(names, name)
	}
	return names
}

// Attempt results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultBlocked = "blocked"
)

// RecordAttempt counts one delivery attempt.
func RecordAttempt(result string, statusCode int, seconds float64) {
	deliveries.WithLabelValues(result, CodeClass(statusCode)).Inc()
	duration.WithLabelValues(result).Observe(seconds)
}

// RecordFinished observes the attempts of a delivery that ended, delivered or not.
func RecordFinished(delivered bool, attemptCount int32) {
	result := "failed"
	if delivered {
		result = "delivered"
	}
	attempts.WithLabelValues(result).Observe(float64(attemptCount))
}

// RecordTest counts one test webhook.
func RecordTest(success bool) {
	result := ResultFailure
	if success {
		result = ResultSuccess
	}
	tests.WithLabelValues(result).Inc()
}

// Reasons an endpoint's attempts wait to start.
const (
	WaitRateLimit  = "rate_limit"
	WaitRetryAfter = "retry_after"
)

// AddRateLimitWait counts seconds an endpoint's next attempt waited for reason (WaitRateLimit,
// WaitRetryAfter).
func AddRateLimitWait(reason string, seconds float64) {
	rateLimitWait.WithLabelValues(reason).Add(seconds)
}

// RefusedTooLarge is the reason of an event refused because it leaves too little room for its status.
const RefusedTooLarge = "too_large"

// RecordRefused counts one event (or redelivery) refused before any attempt, for reason (RefusedTooLarge).
func RecordRefused(reason string) {
	refused.WithLabelValues(reason).Inc()
}

// codeClasses are the class labels of statuses 100 to 599, constants so that counting an attempt
// builds no string.
var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// CodeClass maps an HTTP status to its class label; 0 (no response) is "none".
func CodeClass(statusCode int) string {
	if statusCode < 100 || statusCode > 599 {
		return "none"
	}
	return codeClasses[statusCode/100-1]
}

// Backlog is read at scrape time, so the gauges are never stale.
type Backlog interface {
	// Backlog returns the number of unfinished deliveries and the age in seconds of the oldest event
	// that has one.
	Backlog() (pending int, oldestAgeSeconds float64)
	// OpenCircuits returns the number of endpoints whose circuit is open or probing.
	OpenCircuits() int
	// CachedObjects returns how many objects of each kind the manager's cache holds.
	CachedObjects() map[string]int
}

// RegisterBacklog registers the gauges that are computed from b at scrape time.
func RegisterBacklog(b Backlog) error {
	return crmetrics.Registry.Register(&backlogCollector{source: b})
}

var (
	pendingDesc = prometheus.NewDesc(PendingDeliveries,
		"Deliveries that are not finished: pending, in flight, or waiting for a retry.", nil, nil)
	oldestDesc = prometheus.NewDesc(OldestPendingAgeSeconds,
		"Age in seconds of the oldest DocumentEvent with an unfinished delivery (backlog age); 0 when there is none.", nil, nil)
	circuitsDesc = prometheus.NewDesc(OpenCircuits,
		"Endpoints whose circuit breaker is open or probing.", nil, nil)
	cachedDesc = prometheus.NewDesc(CachedObjects,
		"Objects the manager's cache holds, by kind: DocumentEvents that still need work and WebhookEndpoints, "+
			"of this manager's shard (--watch-label-selector) and namespaces (--watch-namespaces).", []string{"kind"}, nil)
)

type backlogCollector struct{ source Backlog }

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
	ch <- circuitsDesc
	ch <- cachedDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	pending, oldest := c.source.Backlog()
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, oldest)
	ch <- prometheus.MustNewConstMetric(circuitsDesc, prometheus.GaugeValue, float64(c.source.OpenCircuits()))
	for kind, n := range c.source.CachedObjects() {
		ch <- prometheus.MustNewConstMetric(cachedDesc, prometheus.GaugeValue, float64(n), kind)
	}
}
