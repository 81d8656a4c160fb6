package controller

import (
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
)

// deliveryLog writes to the manager's log, at info level, what an operator reading it first needs:
// failed attempts, deliveries that end Failed, destinations the egress policy refused, and circuit
// changes. A receiver that is down fails every delivery sent to it, so each kind of line is limited per
// endpoint: at most one per interval, which then says how many like it were left out. Lines name the
// endpoint, event, delivery id and reason; errors are the sanitized ones of the status, never a secret,
// a URL query or URL credentials.
type deliveryLog struct {
	interval time.Duration

	mu      sync.Mutex
	windows map[deliveryLogKey]*deliveryLogWindow
	swept   time.Time
}

// deliveryLogInterval is how often each kind of line may be written per endpoint.
const deliveryLogInterval = 10 * time.Second

type deliveryLogKey struct {
	endpoint types.NamespacedName
	message  string
}

type deliveryLogWindow struct {
	written    time.Time
	suppressed int
}

func newDeliveryLog(interval time.Duration) *deliveryLog {
	return &deliveryLog{interval: interval, windows: map[deliveryLogKey]*deliveryLogWindow{}}
}

// info writes the line unless one with the same message was written for the endpoint less than an
// interval ago; the line written next carries the count of those left out.
func (l *deliveryLog) info(log logr.Logger, now time.Time, endpoint types.NamespacedName, message string, keysAndValues ...any) {
	suppressed, ok := l.allow(deliveryLogKey{endpoint: endpoint, message: message}, now)
	if !ok {
		return
	}
	if suppressed > 0 {
		keysAndValues = append(keysAndValues, "suppressedSinceLast", suppressed)
	}
	// The reconcile's logger already names the namespace (an event and its endpoints share it).
	log.Info(message, append([]any{"endpoint", endpoint.Name}, keysAndValues...)...)
}

func (l *deliveryLog) allow(key deliveryLogKey, now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= l.interval {
		// A window is claimed by the first line after it ends, which reports its count. One left
		// unclaimed for another interval belongs to an endpoint that stopped failing: dropping it keeps
		// the map as small as the set of endpoints failing now.
		for k, w := range l.windows {
			if now.Sub(w.written) >= 2*l.interval {
				delete(l.windows, k)
			}
		}
		l.swept = now
	}
	w := l.windows[key]
	if w != nil && now.Sub(w.written) < l.interval {
		w.suppressed++
		return 0, false
	}
	if w == nil {
		w = &deliveryLogWindow{}
		l.windows[key] = w
	}
	suppressed, w.written, w.suppressed = w.suppressed, now, 0
	return suppressed, true
}

// Messages of the delivery log, also the keys of its limits.
const (
	logAttemptFailed  = "delivery attempt failed"
	logDeliveryFailed = "delivery failed"
	logBlocked        = "delivery refused by the egress policy"
	logCircuitOpened  = "circuit opened: attempts to the endpoint pause"
	logCircuitClosed  = "circuit closed: attempts to the endpoint resume"
)

// logAttempt logs an attempt that did not succeed.
func (l *deliveryLog) logAttempt(log logr.Logger, now time.Time, ev *webhooksv1alpha1.DocumentEvent,
	endpoint types.NamespacedName, d *webhooksv1alpha1.EndpointDelivery, res delivery.Result) {
	if res.Success {
		return
	}
	if res.Blocked {
		l.info(log, now, endpoint, logBlocked, "event", ev.Name, "deliveryId", d.DeliveryID,
			"reason", webhooksv1alpha1.DestinationBlockedReason, "error", d.LastError)
		return
	}
	next := "none"
	if d.NextAttemptTime != nil {
		next = d.NextAttemptTime.UTC().Format(time.RFC3339)
	}
	l.info(log, now, endpoint, logAttemptFailed, "event", ev.Name, "deliveryId", d.DeliveryID,
		"reason", d.Reason, "attempt", d.Attempts, "statusCode", res.StatusCode,
		"duration", delivery.FormatDuration(res.Duration), "nextAttemptTime", next, "error", d.LastError)
}

// logFailed logs a delivery that ended Failed.
func (l *deliveryLog) logFailed(log logr.Logger, now time.Time, ev *webhooksv1alpha1.DocumentEvent,
	d *webhooksv1alpha1.EndpointDelivery) {
	l.info(log, now, types.NamespacedName{Namespace: ev.Namespace, Name: d.Endpoint}, logDeliveryFailed,
		"event", ev.Name, "deliveryId", d.DeliveryID, "reason", d.Reason, "attempts", d.Attempts, "error", d.LastError)
}

// logCircuit logs a circuit that an attempt opened or closed; transitions are rare by design (one per
// cool-down at most), so they share the limit only with their own kind.
func (l *deliveryLog) logCircuit(log logr.Logger, now time.Time, ep *webhooksv1alpha1.WebhookEndpoint, change engine.CircuitChange) {
	key := types.NamespacedName{Namespace: ep.Namespace, Name: ep.Name}
	switch change {
	case engine.CircuitOpened:
		l.info(log, now, key, logCircuitOpened, "reason", webhooksv1alpha1.CircuitOpenReason,
			"failureThreshold", ep.GetFailureThreshold(), "cooldown", ep.GetCooldown().String())
	case engine.CircuitClosed:
		l.info(log, now, key, logCircuitClosed)
	}
}
