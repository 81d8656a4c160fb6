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
// # Lifetime
//
// State is keyed by the endpoint's UID, created on first use and released when the endpoint is deleted
// or recreated under the same name (ForgetEndpoint, or a Lookup that returns a new UID): lanes, health,
// test runs and the Sender's TLS pool. A recreated endpoint starts with a closed circuit and no failures.
package engine
