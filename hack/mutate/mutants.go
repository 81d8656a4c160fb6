package main

const (
	engineGo    = "internal/engine/engine.go"
	healthGo    = "internal/engine/health.go"
	rateLimitGo = "internal/engine/ratelimit.go"
)

// mutants is the gate's list: each entry is one defect the tests must catch, written as an edit of the
// code as it is now. When the code moves, the runner names the entry whose original snippet it no longer
// finds exactly once: copy the current line into original and redo the change in replacement.
var mutants = []mutant{
	{
		name:        "circuit-check-dropped-at-admission",
		file:        healthGo,
		original:    "if h.circuit == circuitClosed {",
		replacement: "if true {",
		why:         "an open circuit no longer holds back the attempts that start during its cool-down",
	},
	{
		name:        "readiness-not-rechecked-at-start",
		file:        engineGo,
		original:    "if !rd.Ready {",
		replacement: "if rd.Reason == webhooksv1alpha1.DestinationBlockedReason {",
		why:         "an endpoint that stopped being ready after the attempt was queued still gets it",
	},
	{
		name:        "dial-block-ignored",
		file:        healthGo,
		original:    "if generation == 0 || generation != ep.Generation || allowPrivate != ep.AllowPrivate {",
		replacement: "if true || generation == 0 || generation != ep.Generation || allowPrivate != ep.AllowPrivate {",
		why:         "a destination the egress policy refused at dial time is dialled again and again",
	},
	{
		name:        "uid-check-dropped",
		file:        engineGo,
		original:    "case !found || ep.UID != a.EndpointUID:",
		replacement: "case !found:",
		why:         "an attempt planned for a deleted endpoint goes to the one recreated under its name",
	},
	{
		name:        "lowered-max-attempts-not-checked-at-start",
		file:        engineGo,
		original:    "if !test && ep.MaxAttempts > 0 && a.Attempts >= ep.MaxAttempts {",
		replacement: "if false && !test && ep.MaxAttempts > 0 && a.Attempts >= ep.MaxAttempts {",
		why:         "an attempt queued before spec.retry.maxAttempts was lowered goes out beyond the new bound",
	},
	{
		name:        "namespace-bound-dropped",
		file:        engineGo,
		original:    "if l.running >= l.limit || e.perNamespace[l.key.Namespace] >= e.maxPerNamespace || !e.mayStartLocked(l) {",
		replacement: "if l.running >= l.limit || !e.mayStartLocked(l) {",
		why:         "one namespace's hanging receivers can take the whole global bound",
	},
	{
		name:        "lane-bound-dropped",
		file:        engineGo,
		original:    "if l.running >= l.limit || e.perNamespace[l.key.Namespace] >= e.maxPerNamespace || !e.mayStartLocked(l) {",
		replacement: "if e.perNamespace[l.key.Namespace] >= e.maxPerNamespace || !e.mayStartLocked(l) {",
		why:         "an endpoint gets more attempts in flight than its spec.maxInFlight",
	},
	{
		name:        "rate-wait-skipped",
		file:        rateLimitGo,
		original:    "if t.bucket == nil || t.bucket.AllowN(now, 1) {",
		replacement: "if t.bucket == nil || t.bucket.AllowN(now, 1) || true {",
		why:         "an empty token bucket no longer holds attempts back: spec.rateLimit is not enforced",
	},
	{
		name:        "retry-after-pause-skipped",
		file:        rateLimitGo,
		original:    "if now.Before(t.pausedUntil) {",
		replacement: "if false && now.Before(t.pausedUntil) {",
		why:         "attempts go out inside the pause a receiver asked for with Retry-After",
	},
	{
		name:        "retry-after-pause-uncapped",
		file:        rateLimitGo,
		original:    "wait = min(wait, ep.MaxPause)",
		replacement: "wait = res.RetryAfter",
		why:         "a receiver's Retry-After pauses the endpoint beyond spec.retry.maxInterval",
	},
	{
		name:        "learning-attempt-not-charged",
		file:        engineGo,
		original:    "return t.bucket == nil || t.bucket.AllowN(now, 1)",
		replacement: "return true",
		why:         "an attempt let out before its endpoint's rate limit was known costs no token: burst + 1 requests go out at once",
	},
	{
		name:        "throttle-released-with-the-lane",
		file:        engineGo,
		original:    "delete(e.lanes, l.uid)",
		replacement: "delete(e.lanes, l.uid); delete(e.throttles, l.uid)",
		why:         "the token bucket starts full again whenever the lane runs empty, so deliveries that arrive one by one are never limited",
	},
	{
		name:        "several-probes-per-cool-down",
		file:        healthGo,
		original:    "return max(min(h.probeDeadline.Sub(now), ep.Cooldown), 0)",
		replacement: "return 0",
		why:         "a probing circuit admits more probes while the first is in flight",
	},
	{
		name:        "failed-probe-not-reopening",
		file:        healthGo,
		original:    "case probe && h.circuit == circuitProbing:",
		replacement: "case false:",
		why:         "a failed probe leaves the circuit probing instead of open for another cool-down",
	},
	{
		name:        "stop-not-waiting-for-attempts-in-flight",
		file:        engineGo,
		original:    "e.running.Wait()",
		replacement: "",
		why:         "Stop returns while attempts are in flight, so their outcomes are never recorded and the next leader sends them again",
	},
	{
		name:        "ack-before-patch",
		file:        "internal/controller/documentevent_controller.go",
		original:    "if err := r.patchStatus(ctx, s); err != nil {",
		replacement: "if err := func() error { r.shared.engine.Ack(client.ObjectKeyFromObject(s.ev), s.recorded); return r.patchStatus(ctx, s) }(); err != nil {",
		why:         "outcomes are forgotten before the status that records them is written: a failed patch sends a delivered event again",
	},
	{
		name:        "held-attempt-ending-in-no-outcome",
		file:        engineGo,
		original:    "e.mailbox[a.Event] = append(e.mailbox[a.Event], out)",
		replacement: "if out.Kind != Held { e.mailbox[a.Event] = append(e.mailbox[a.Event], out) }",
		why:         "a held attempt leaves its delivery busy with nothing to record: it waits forever",
	},
	{
		name:        "held-outcome-not-rechecked",
		file:        "internal/controller/event_phases.go",
		original:    "s.requeueWithin(outcomeRecheck)",
		replacement: "",
		why:         "a delivery held without a retry time is looked at again only when its endpoint changes",
	},
}
