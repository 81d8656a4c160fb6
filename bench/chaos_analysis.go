package main

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// samples caps the examples a chaos result lists for each kind of finding.
const samples = 10

// eventTally is the final status of the events.
type eventTally struct {
	delivered, failed, failedWithoutReason, unfinished int
	failedReasons                                      map[string]int
	recordedAttempts                                   int
	// lost lists events that are neither Delivered nor Failed with a reason.
	lost []eventSample
}

// eventSample shows a lost event's status, times in seconds from the start of the stream.
type eventSample struct {
	Event      string           `json:"event"`
	Phase      string           `json:"phase"`
	CreatedAt  float64          `json:"created_at_seconds"`
	Deliveries []deliverySample `json:"deliveries"`
}

type deliverySample struct {
	Endpoint      string   `json:"endpoint"`
	Phase         string   `json:"phase"`
	Reason        string   `json:"reason,omitempty"`
	Attempts      int32    `json:"attempts"`
	LastStatus    int32    `json:"last_status,omitempty"`
	LastError     string   `json:"last_error,omitempty"`
	NextAttemptAt *float64 `json:"next_attempt_at_seconds,omitempty"`
}

func tallyEvents(events []webhooksv1alpha1.DocumentEvent, maxAttempts int32, t0 time.Time) eventTally {
	t := eventTally{failedReasons: map[string]int{}, lost: []eventSample{}}
	for i := range events {
		ev := &events[i]
		for _, d := range ev.Status.Deliveries {
			t.recordedAttempts += int(d.Attempts)
		}
		switch ev.Status.Phase {
		case webhooksv1alpha1.DocumentEventDelivered:
			t.delivered++
			continue
		case webhooksv1alpha1.DocumentEventFailed:
			if reason, ok := realFailure(ev, maxAttempts); ok {
				t.failed++
				t.failedReasons[reason]++
				continue
			}
			t.failedWithoutReason++
		default:
			t.unfinished++
		}
		if len(t.lost) < samples {
			t.lost = append(t.lost, describeEvent(ev, t0))
		}
	}
	return t
}

// realFailure tells whether every delivery of a Failed event that is not Delivered gave up for a reason
// the API documents: attempts exhausted after maxAttempts, or the endpoint deleted.
func realFailure(ev *webhooksv1alpha1.DocumentEvent, maxAttempts int32) (string, bool) {
	reason := ""
	for _, d := range ev.Status.Deliveries {
		if d.Phase == webhooksv1alpha1.DeliveryDelivered {
			continue
		}
		if d.Phase != webhooksv1alpha1.DeliveryFailed {
			return "", false
		}
		switch {
		case d.Reason == webhooksv1alpha1.AttemptsExhaustedReason && d.Attempts >= maxAttempts:
		case d.Reason == webhooksv1alpha1.EndpointDeletedReason:
		default:
			return "", false
		}
		reason = d.Reason
	}
	return reason, reason != ""
}

func describeEvent(ev *webhooksv1alpha1.DocumentEvent, t0 time.Time) eventSample {
	out := eventSample{Event: ev.Name, Phase: string(ev.Status.Phase), CreatedAt: round(since(t0, ev.CreationTimestamp.Time), 1),
		Deliveries: make([]deliverySample, 0, len(ev.Status.Deliveries))}
	for _, d := range ev.Status.Deliveries {
		ds := deliverySample{Endpoint: d.Endpoint, Phase: string(d.Phase), Reason: d.Reason, Attempts: d.Attempts,
			LastStatus: d.LastStatusCode, LastError: truncate(d.LastError, 120)}
		if d.NextAttemptTime != nil {
			at := round(since(t0, d.NextAttemptTime.Time), 1)
			ds.NextAttemptAt = &at
		}
		out.Deliveries = append(out.Deliveries, ds)
	}
	return out
}

// receiverTally is what the receivers saw.
type receiverTally struct {
	requests, ok, failed, held int
	beyondFirst                int // requests beyond the first per X-Webhook-Id, retries included
	duplicates                 int // 2xx answers beyond the first per X-Webhook-Id
	duplicateCauses            map[string]int
	unexplained                []requestSample
	okWhileAPIDown             int
	resent                     int // requests after the id was seen recorded Delivered
	resentSamples              []requestSample
	documents                  int // distinct (endpoint, document)
	severalIDs                 int // (endpoint, document) pairs that came with more than one X-Webhook-Id
	severalIDsSamples          []idSample
	badSignatures              int64
	okTimes                    []time.Time // sorted
	// regressions count deliveries seen recorded Delivered and later seen otherwise.
	regressions       int
	regressionSamples []regressionSample
	// recordLags are, per delivery, the seconds from its first 2xx until the benchmark saw it recorded
	// Delivered: the window in which a crash makes it a duplicate.
	recordLags []float64
}

// requestSample is a request that came again: First is when the benchmark saw the id recorded
// Delivered (a resend) or when its first copy was answered 2xx (a duplicate), At when it came again.
type requestSample struct {
	Endpoint   string  `json:"endpoint"`
	Document   string  `json:"document"`
	DeliveryID string  `json:"delivery_id"`
	First      float64 `json:"first_seconds"`
	At         float64 `json:"again_at_seconds"`
	Answer     int     `json:"answer"`
}

// regressionSample is a Delivered record that a later status write undid; times in seconds.
type regressionSample struct {
	Event       string  `json:"event"`
	Endpoint    string  `json:"endpoint"`
	DeliveryID  string  `json:"delivery_id"`
	Phase       string  `json:"later_phase"`
	DeliveredAt float64 `json:"seen_delivered_seconds"`
	At          float64 `json:"seen_undone_seconds"`
}

type idSample struct {
	Endpoint string   `json:"endpoint"`
	Document string   `json:"document"`
	IDs      []string `json:"ids"`
}

// Causes of a duplicate 2xx: the replica that got the first 2xx could not record it.
const (
	causeResent    = "resent_after_seen_delivered" // not a lost record: a resend (see resent_after_delivered)
	causeAPIOutage = "first_copy_while_api_down"
	causeKill      = "first_copy_within_5s_before_a_kill"
	causeExit      = "first_copy_within_5s_before_a_replica_exited"
	causeOther     = "other"
)

// duplicateCause explains why the first 2xx of a delivery (at first) was not recorded.
func (run *chaosRun) duplicateCause(first time.Time, exitedAt []time.Time) string {
	const window = 5 * time.Second
	if !run.apiStopped.IsZero() && !first.Before(run.apiStopped) && !first.After(run.apiBack) {
		return causeAPIOutage
	}
	within := func(times []time.Time) bool {
		return slices.ContainsFunc(times, func(t time.Time) bool { return !first.After(t) && t.Sub(first) <= window })
	}
	switch {
	case within(run.killTimes):
		return causeKill
	case within(exitedAt):
		return causeExit
	}
	return causeOther
}

func (run *chaosRun) tallyReceivers() receiverTally {
	run.tracker.mu.Lock()
	recorded := maps.Clone(run.tracker.delivered)
	regressions := slices.Clone(run.tracker.regressions)
	run.tracker.mu.Unlock()
	run.reps.mu.Lock()
	exitedAt := slices.Clone(run.reps.exitedAt)
	run.reps.mu.Unlock()

	t := receiverTally{duplicateCauses: map[string]int{}, unexplained: []requestSample{}, resentSamples: []requestSample{},
		severalIDsSamples: []idSample{}, regressions: len(regressions), regressionSamples: []regressionSample{}}
	for _, g := range regressions {
		if len(t.regressionSamples) < samples {
			t.regressionSamples = append(t.regressionSamples, regressionSample{Event: g.event, Endpoint: g.endpoint,
				DeliveryID: g.id, Phase: g.phase, DeliveredAt: round(since(run.t0, g.deliveredAt), 2), At: round(since(run.t0, g.at), 2)})
		}
	}
	for _, r := range run.recvs {
		t.badSignatures += r.badSignatures.Load()
		perID := map[string]int{}
		firstOK := map[string]time.Time{}
		idsPerDoc := map[string]map[string]bool{}
		for _, q := range r.snapshot() {
			t.requests++
			if perID[q.id]++; perID[q.id] > 1 {
				t.beyondFirst++
			}
			sample := requestSample{Endpoint: r.endpoint, Document: q.document, DeliveryID: q.id,
				At: round(since(run.t0, q.at), 2), Answer: q.code}
			switch {
			case q.code >= 200 && q.code < 300:
				t.ok++
				t.okTimes = append(t.okTimes, q.answeredAt)
				if !run.apiStopped.IsZero() && !q.answeredAt.Before(run.apiStopped) && q.answeredAt.Before(run.apiStarted) {
					t.okWhileAPIDown++
				}
				first, seen := firstOK[q.id]
				if !seen {
					firstOK[q.id] = q.answeredAt
					break
				}
				t.duplicates++
				cause := run.duplicateCause(first, exitedAt)
				if rec, ok := recorded[q.id]; ok && q.at.After(rec.at.Add(resendSlack)) {
					cause = causeResent
				}
				t.duplicateCauses[cause]++
				if cause == causeOther && len(t.unexplained) < samples {
					sample.First = round(since(run.t0, first), 2)
					t.unexplained = append(t.unexplained, sample)
				}
			case q.code == 0:
				t.held++
			default:
				t.failed++
			}
			if idsPerDoc[q.document] == nil {
				idsPerDoc[q.document] = map[string]bool{}
			}
			idsPerDoc[q.document][q.id] = true
			if rec, ok := recorded[q.id]; ok && q.at.After(rec.at.Add(resendSlack)) {
				t.resent++
				if len(t.resentSamples) < samples {
					sample.First = round(since(run.t0, rec.at), 2)
					t.resentSamples = append(t.resentSamples, sample)
				}
			}
		}
		for id, first := range firstOK {
			if rec, ok := recorded[id]; ok {
				t.recordLags = append(t.recordLags, rec.at.Sub(first).Seconds())
			}
		}
		t.documents += len(idsPerDoc)
		for doc, ids := range idsPerDoc {
			if len(ids) <= 1 {
				continue
			}
			t.severalIDs++
			if len(t.severalIDsSamples) < samples {
				t.severalIDsSamples = append(t.severalIDsSamples, idSample{Endpoint: r.endpoint, Document: doc, IDs: slices.Sorted(maps.Keys(ids))})
			}
		}
	}
	slices.SortFunc(t.okTimes, func(a, b time.Time) int { return a.Compare(b) })
	return t
}

// nextOK returns how long after t the receivers next answered 2xx.
func (t receiverTally) nextOK(after time.Time) (float64, bool) {
	i, _ := slices.BinarySearchFunc(t.okTimes, after, func(a, b time.Time) int { return a.Compare(b) })
	if i >= len(t.okTimes) {
		return 0, false
	}
	return t.okTimes[i].Sub(after).Seconds(), true
}

// analyze turns the final status of the events and what the receivers saw into the chaos result.
func (run *chaosRun) analyze(events []webhooksv1alpha1.DocumentEvent) result {
	sz := run.sz
	created := int(run.created.Load())
	ev := tallyEvents(events, sz.maxAttempts, run.t0)
	rt := run.tallyReceivers()
	lost := created - ev.delivered - ev.failed

	killGaps := []float64{}
	longestKillGap, killsWithoutLaterOK := 0.0, 0
	for _, k := range run.killTimes {
		gap, ok := rt.nextOK(k)
		if !ok {
			killsWithoutLaterOK++
			continue
		}
		killGaps = append(killGaps, round(gap, 2))
		longestKillGap = max(longestKillGap, gap)
	}
	apiGap := -1.0
	if gap, ok := rt.nextOK(run.apiStopped); ok && !run.apiStopped.IsZero() {
		apiGap = round(gap, 2)
	}

	run.reps.mu.Lock()
	kills, exits := append([]killRecord{}, run.reps.kills...), append([]exitRecord{}, run.reps.exits...)
	startFailures, startErrs, started := run.reps.startErr, append([]string{}, run.reps.startErrs...), run.reps.started
	logs := slices.Clone(run.reps.logs)
	run.reps.mu.Unlock()
	panics := panicsIn(logs...)

	info("chaos: %d created, %d delivered, %d failed, %d lost; %d resent after Delivered, %d Delivered records undone; %d duplicate 2xx %v; "+
		"%d documents with several ids; %d kills, %d API restarts, %d replica exits; longest kill-to-delivery %.1fs",
		created, ev.delivered, ev.failed, lost, rt.resent, rt.regressions, rt.duplicates, rt.duplicateCauses, rt.severalIDs,
		len(run.killTimes), run.apiRestarts, len(exits), longestKillGap)
	details := map[string]any{
		"events_created":                    created,
		"events_create_gave_up":             run.createGaveUp.Load(),
		"events_delivered":                  ev.delivered,
		"events_failed":                     ev.failed,
		"events_failed_reasons":             ev.failedReasons,
		"events_failed_without_reason":      ev.failedWithoutReason,
		"events_unfinished":                 ev.unfinished,
		"events_lost":                       lost,
		"lost_samples":                      ev.lost,
		"all_finished_within_drain":         run.drained,
		"drain_seconds":                     round(run.drainSecs, 1),
		"resent_after_delivered":            rt.resent,
		"resent_samples":                    rt.resentSamples,
		"delivered_records_undone":          rt.regressions,
		"delivered_records_undone_samples":  rt.regressionSamples,
		"resend_slack_seconds":              resendSlack.Seconds(),
		keyReceiverRequests:                 rt.requests,
		"receiver_2xx":                      rt.ok,
		"receiver_500":                      rt.failed,
		"receiver_held_past_timeout":        rt.held,
		"receiver_2xx_while_api_down":       rt.okWhileAPIDown,
		"receiver_requests_beyond_first_id": rt.beyondFirst,
		"duplicates_2xx_beyond_first":       rt.duplicates,
		"duplicates_by_cause":               rt.duplicateCauses,
		"duplicates_unexplained_samples":    rt.unexplained,
		"documents_with_several_ids":        rt.severalIDs,
		"several_ids_samples":               rt.severalIDsSamples,
		"same_id_for_every_duplicate":       rt.severalIDs == 0,
		"receiver_documents":                rt.documents,
		"bad_signatures":                    rt.badSignatures,
		"attempts_recorded_in_status":       ev.recordedAttempts,
		"kills":                             len(run.killTimes),
		"kill_log":                          kills,
		"kill_to_next_2xx_seconds":          killGaps,
		"longest_kill_to_next_2xx_seconds":  round(longestKillGap, 2),
		"kills_without_later_2xx":           killsWithoutLaterOK,
		"api_server_restarts":               run.apiRestarts,
		"api_server_down_seconds":           round(run.apiBack.Sub(run.apiStopped).Seconds(), 1),
		"api_server_stopped_at_seconds":     round(since(run.t0, run.apiStopped), 1),
		"api_server_healthy_at_seconds":     round(since(run.t0, run.apiStarted), 1),
		"api_server_serving_at_seconds":     round(since(run.t0, run.apiBack), 1),
		"api_stop_to_next_2xx_seconds":      apiGap,
		"replica_exits_unplanned":           len(exits),
		"replica_exit_log":                  exits,
		"replicas_started":                  started,
		"replica_start_failures":            startFailures,
		"replica_start_failure_samples":     startErrs,
		"manager_panics":                    len(panics),
		"stream_rate_per_second":            sz.rate,
		"stream_seconds":                    round(since(run.t0, run.streamEnd), 1),
		keyEndpoints:                        sz.endpoints,
		"receiver_fail_rate":                sz.failRate,
		"receiver_hang_rate":                sz.hangRate,
		"endpoint_timeout_seconds":          sz.timeout.Seconds(),
		"retry":                             "maxAttempts 20, initialInterval 1s, maxInterval 5s; circuit failureThreshold 50",
		"leader_election":                   strings.Join(fastLeaderElection, " "),
		"seed":                              chaosSeed,
		keyMeasured: "lost = created - Delivered - Failed with a reason (AttemptsExhausted after maxAttempts, or " +
			"EndpointDeleted); resent = receiver requests for a delivery id that arrived more than the slack after the " +
			"benchmark's watch first saw that id recorded Delivered; undone = deliveries the watch saw Delivered and later " +
			"saw otherwise; duplicates = 2xx answers beyond the first per id",
	}
	if len(panics) > 0 {
		details["manager_panic_lines"] = panics
	}
	if lags := rt.recordLags; len(lags) > 0 {
		details["first_2xx_to_seen_recorded_seconds"] = map[string]float64{
			"p50": round(percentile(lags, 0.5), 3), "p90": round(percentile(lags, 0.9), 3),
			"p99": round(percentile(lags, 0.99), 3), "max": round(percentile(lags, 1), 3),
		}
	}
	met := lost == 0 && rt.resent == 0 && rt.regressions == 0 && rt.severalIDs == 0 && rt.badSignatures == 0
	return result{Scenario: scChaos, Value: float64(lost), Unit: "events lost", Target: targets[scChaos], Met: met, Details: details}
}

// dumpLine is one line of the chaos request log; times in seconds from the start of the stream.
type dumpLine struct {
	Kind     string  `json:"kind"` // request, recorded (seen Delivered), kill, api
	Endpoint string  `json:"endpoint,omitempty"`
	ID       string  `json:"id,omitempty"`
	Document string  `json:"document,omitempty"`
	Event    string  `json:"event,omitempty"`
	Code     int     `json:"code,omitempty"`
	At       float64 `json:"at"`
	Answered float64 `json:"answered,omitempty"`
	// For kind api: when it was healthy and serving again.
	Healthy float64 `json:"healthy,omitempty"`
	Serving float64 `json:"serving,omitempty"`
}

// dump writes every receiver request, every delivery the watch saw recorded Delivered, the kills and the
// API server restart as JSON lines, for a closer look (--keep-logs keeps the file).
func (run *chaosRun) dump(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	rel := func(t time.Time) float64 { return round(since(run.t0, t), 3) }
	for _, r := range run.recvs {
		for _, q := range r.snapshot() {
			_ = enc.Encode(dumpLine{Kind: "request", Endpoint: r.endpoint, ID: q.id, Document: q.document, Code: q.code,
				At: rel(q.at), Answered: rel(q.answeredAt)})
		}
	}
	run.tracker.mu.Lock()
	for id, rec := range run.tracker.delivered {
		_ = enc.Encode(dumpLine{Kind: "recorded", Endpoint: rec.endpoint, ID: id, Event: rec.event, At: rel(rec.at)})
	}
	run.tracker.mu.Unlock()
	for _, k := range run.killTimes {
		_ = enc.Encode(dumpLine{Kind: "kill", At: rel(k)})
	}
	_ = enc.Encode(dumpLine{Kind: "api", At: rel(run.apiStopped), Healthy: rel(run.apiStarted), Serving: rel(run.apiBack)})
	return f.Close()
}
