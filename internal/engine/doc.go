// Package engine owns every piece of in-memory delivery state of the operator: the per-endpoint lanes
// and the global and per-namespace bounds on attempts in flight, the attempts themselves, the results
// that wait to be recorded, each endpoint's circuit breaker and delivery summary, and test webhook runs.
//
// The reconcilers translate between Kubernetes objects and the engine and nothing else. They call the
// engine; the engine never calls a reconciler. It reaches the rest of the operator through three narrow
// ports given to New: a Sender (one HTTP attempt), an Endpoints lookup (the endpoint as it is now, with
// its resolved Secrets and readiness) and a clock. It tells the reconcilers that something is worth a
// look by putting keys in two Wakes sets, which never block.
//
// # One delivery
//
// A delivery is the event's entry for one endpoint, identified by its delivery id. Its durable state is
// the DocumentEvent status; the engine only holds what is between two status writes:
//
//	        Submit                 slot free (lane, namespace, global)
//	idle ──────────────▶ queued ─────────────────────────────────────▶ admitting
//	 ▲                     │ Stop: dropped, never sent                   │
//	 │                     ▼                                             │ Endpoints.Lookup, readiness,
//	 │                   idle                                            │ encode, circuit
//	 │                                                                   ▼
//	 │  Ack (after the status patch      ┌──── not admitted: Held, EndpointGone, Unencodable
//	 │  that records it succeeded)       │
//	 └──────────────────────── finished ◀┴──── admitted: Sent (one HTTP attempt; Blocked is a Sent
//	                             (mailbox)                  whose dial the egress policy refused)
//
// Admission happens when the attempt starts, not when it is queued: the request is built from the
// endpoint as it is at that moment (URL, Secrets, TLS, suspend, egress, circuit), so a queued attempt can
// never bypass a pause or use settings that changed while it waited. Every attempt that leaves the queue
// ends in exactly one Outcome in the event's mailbox, and the delivery stays busy (never submitted twice)
// until the reconciler acknowledges the outcome after recording it durably. Outcomes that are not
// acknowledged (a failed patch, a reconcile that returned early) stay in the mailbox for the next
// reconcile, so a result is never lost and never applied twice.
//
// # One endpoint's circuit
//
//	          failures ≥ threshold                 cooldown elapsed, next attempt admitted
//	closed ───────────────────────────▶ open ─────────────────────────────────────────────▶ probing
//	  ▲                                  ▲                                                     │
//	  │                                  └──────── probe failed (or its dial was blocked) ─────┤
//	  └──────────────────────────────────────────── probe succeeded ───────────────────────────┘
//
// Exactly one probe is admitted per cool-down. The probe is admitted only when an HTTP attempt is
// certain to be made, and every such attempt reports back, so the circuit cannot stay half-open. A
// probe that somehow never reports (it cannot, but the cost of being wrong is an endpoint that never
// recovers) is superseded once twice its timeout has passed.
//
// # One endpoint's rate
//
// An attempt leaves its lane only when the endpoint's throttle lets it: a token bucket for
// spec.rateLimit, and a pause until the time a receiver's 429 or 503 asked for with Retry-After (capped
// by spec.retry.maxInterval), which holds back every attempt to the endpoint, not only the one that
// received it. An attempt held back stays queued: it takes no in-flight slot, ends in no Outcome and is
// not counted, and a timer dispatches the lane again when it may go. The rate limit is learnt from the
// lookup, so a lane whose endpoint has not been looked up yet starts a single attempt first.
//
// # Lifetime
//
// State is keyed by the endpoint's UID, created on first use and released when the endpoint is deleted
// or recreated under the same name (ForgetEndpoint, or a Lookup that returns a new UID): lanes, health,
// throttles, test runs and the Sender's TLS pool. A throttle outlives the lanes, which are released
// whenever they run empty, so that deliveries arriving one by one cannot refill the bucket. A recreated endpoint starts with a closed circuit and no failures.
package engine
