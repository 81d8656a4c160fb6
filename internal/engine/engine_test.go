package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

// fakeSender answers each request after delay with answer(request), and counts what it saw.
type fakeSender struct {
	mu      sync.Mutex
	delay   time.Duration
	answer  func(delivery.Request) delivery.Result
	sent    []delivery.Request
	peak    map[string]int
	running map[string]int
	forgot  []string
}

func newFakeSender(delay time.Duration, answer func(delivery.Request) delivery.Result) *fakeSender {
	return &fakeSender{delay: delay, answer: answer, peak: map[string]int{}, running: map[string]int{}}
}

func (s *fakeSender) Send(_ context.Context, r delivery.Request) delivery.Result {
	s.mu.Lock()
	s.sent = append(s.sent, r)
	s.running[r.URL]++
	s.peak[r.URL] = max(s.peak[r.URL], s.running[r.URL])
	start := time.Now()
	answer := s.answer
	s.mu.Unlock()
	time.Sleep(s.delay)
	res := answer(r)
	res.Start, res.Duration = start, s.delay
	s.mu.Lock()
	s.running[r.URL]--
	s.mu.Unlock()
	return res
}

func (s *fakeSender) setAnswer(answer func(delivery.Request) delivery.Result) {
	s.mu.Lock()
	s.answer = answer
	s.mu.Unlock()
}

func (s *fakeSender) ForgetTLS(owner string) {
	s.mu.Lock()
	s.forgot = append(s.forgot, owner)
	s.mu.Unlock()
}

func (s *fakeSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

func ok(delivery.Request) delivery.Result { return delivery.Result{StatusCode: 200, Success: true} }
func failed(delivery.Request) delivery.Result {
	return delivery.Result{StatusCode: 500, Error: "HTTP 500"}
}

// fakeEndpoints is the Endpoints port: a map the test edits.
type fakeEndpoints struct {
	mu  sync.Mutex
	eps map[types.NamespacedName]Endpoint
	err error
}

func (f *fakeEndpoints) Lookup(_ context.Context, key types.NamespacedName) (Endpoint, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Endpoint{}, false, f.err
	}
	ep, found := f.eps[key]
	return ep, found, nil
}

func (f *fakeEndpoints) set(ep Endpoint) {
	f.mu.Lock()
	f.eps[ep.Key] = ep
	f.mu.Unlock()
}

func (f *fakeEndpoints) edit(key types.NamespacedName, change func(*Endpoint)) {
	f.mu.Lock()
	ep := f.eps[key]
	change(&ep)
	f.eps[key] = ep
	f.mu.Unlock()
}

func (f *fakeEndpoints) remove(key types.NamespacedName) {
	f.mu.Lock()
	delete(f.eps, key)
	f.mu.Unlock()
}

func endpoint(ns, name string, uid types.UID) Endpoint {
	return Endpoint{
		Key: types.NamespacedName{Namespace: ns, Name: name}, UID: uid, Generation: 1,
		Readiness:   Readiness{Ready: true, Reason: webhooksv1alpha1.ReadyReason},
		Request:     delivery.Request{URL: "https://" + name + "." + ns + "/hook", Timeout: 10 * time.Second, Secret: []byte("key-1")},
		MaxInFlight: 4, FailureThreshold: 3, Cooldown: time.Minute,
	}
}

func attemptFor(ep Endpoint, event, id string) Attempt {
	return Attempt{
		Event: types.NamespacedName{Namespace: ep.Key.Namespace, Name: event}, Endpoint: ep.Key, EndpointUID: ep.UID,
		DeliveryID: id, MaxInFlight: ep.MaxInFlight, Body: func() ([]byte, error) { return []byte(`{}`), nil },
	}
}

func newTestEngine(sender *fakeSender, eps *fakeEndpoints, maxInFlight, perNamespace int) *Engine {
	return New(Config{Sender: sender, Endpoints: eps, Now: time.Now, MaxInFlight: maxInFlight, MaxInFlightPerNamespace: perNamespace})
}

func endpointsOf(eps ...Endpoint) *fakeEndpoints {
	f := &fakeEndpoints{eps: map[types.NamespacedName]Endpoint{}}
	for _, ep := range eps {
		f.set(ep)
	}
	return f
}

// outcome waits for the event's single outcome.
func outcome(t *testing.T, e *Engine, event types.NamespacedName) Outcome {
	t.Helper()
	synctest.Wait()
	outs := e.Outcomes(event)
	if len(outs) != 1 {
		t.Fatalf("outcomes of %s: got %d, want 1: %+v", event, len(outs), outs)
	}
	return outs[0]
}

// sendOne submits one attempt of event to ep, waits past the sender's delay, and acknowledges the outcome.
func sendOne(t *testing.T, e *Engine, ep Endpoint, event string) Outcome {
	t.Helper()
	key := types.NamespacedName{Namespace: ep.Key.Namespace, Name: event}
	e.Submit(attemptFor(ep, event, "id-"+event))
	time.Sleep(2 * time.Second)
	out := outcome(t, e, key)
	e.Ack(key, []Outcome{out})
	return out
}

func TestAdmissionUsesTheEndpointAsItIsWhenTheAttemptStarts(t *testing.T) {
	tests := []struct {
		name     string
		change   func(f *fakeEndpoints, ep Endpoint)
		wantKind OutcomeKind
		check    func(t *testing.T, sent []delivery.Request, out Outcome)
	}{
		{
			name:     "suspended while queued: held, nothing sent",
			change:   func(f *fakeEndpoints, ep Endpoint) { f.edit(ep.Key, suspend) },
			wantKind: Held,
			check: func(t *testing.T, sent []delivery.Request, out Outcome) {
				if out.Readiness.Reason != webhooksv1alpha1.SuspendedReason {
					t.Errorf("held for %q, want Suspended", out.Readiness.Reason)
				}
			},
		},
		{
			name:     "deleted while queued: endpoint gone",
			change:   func(f *fakeEndpoints, ep Endpoint) { f.remove(ep.Key) },
			wantKind: EndpointGone,
		},
		{
			name: "recreated under the same name while queued: endpoint gone",
			change: func(f *fakeEndpoints, ep Endpoint) {
				f.edit(ep.Key, func(e *Endpoint) { e.UID = "uid-new" })
			},
			wantKind: EndpointGone,
		},
		{
			name: "maxAttempts lowered while queued to the attempts made: held as exhausted, nothing sent",
			change: func(f *fakeEndpoints, ep Endpoint) {
				f.edit(ep.Key, func(e *Endpoint) { e.MaxAttempts = 2 })
			},
			wantKind: Held,
			check: func(t *testing.T, _ []delivery.Request, out Outcome) {
				if out.Readiness.Reason != webhooksv1alpha1.AttemptsExhaustedReason {
					t.Errorf("held for %q, want AttemptsExhausted", out.Readiness.Reason)
				}
			},
		},
		{
			name: "URL and key changed while queued: the new ones are used",
			change: func(f *fakeEndpoints, ep Endpoint) {
				f.edit(ep.Key, func(e *Endpoint) {
					e.Request.URL, e.Request.Secret, e.Generation = "https://moved.example/hook", []byte("key-2"), 2
				})
			},
			wantKind: Sent,
			check: func(t *testing.T, sent []delivery.Request, _ Outcome) {
				last := sent[len(sent)-1]
				if last.URL != "https://moved.example/hook" || string(last.Secret) != "key-2" {
					t.Errorf("sent to %s with key %q, want the new URL and key", last.URL, last.Secret)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ep := endpoint("acme", "ep", "uid-1")
				ep.MaxInFlight, ep.MaxAttempts = 1, 5
				eps := endpointsOf(ep)
				sender := newFakeSender(time.Second, ok)
				e := newTestEngine(sender, eps, 8, 8)
				// The first attempt holds the lane's only slot; the second waits in the queue.
				e.Submit(attemptFor(ep, "first", "d1"))
				second := attemptFor(ep, "second", "d2")
				second.Attempts = 2 // two attempts recorded, under maxAttempts 5 when it was submitted
				e.Submit(second)
				synctest.Wait()
				tt.change(eps, ep)
				time.Sleep(2 * time.Second)
				out := outcome(t, e, types.NamespacedName{Namespace: "acme", Name: "second"})
				if out.Kind != tt.wantKind {
					t.Fatalf("outcome %v, want %v", out.Kind, tt.wantKind)
				}
				if tt.wantKind != Sent && sender.count() != 1 {
					t.Errorf("%d requests sent, want only the first", sender.count())
				}
				if tt.check != nil {
					tt.check(t, sender.sent, out)
				}
			})
		})
	}
}

func suspend(e *Endpoint) {
	e.Readiness = Readiness{Reason: webhooksv1alpha1.SuspendedReason, Message: "suspended"}
}

func TestCircuitAdmitsOneProbePerCooldownAndOnlyTheProbeMovesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		ep.FailureThreshold, ep.MaxInFlight = 2, 1
		eps := endpointsOf(ep)
		sender := newFakeSender(time.Second, failed)
		e := newTestEngine(sender, eps, 8, 8)
		run := func(event string) Outcome { return sendOne(t, e, ep, event) }
		run("a")
		if out := run("b"); out.Circuit != CircuitOpened {
			t.Fatalf("second failure: circuit %v, want opened", out.Circuit)
		}
		if out := run("c"); out.Kind != Held || out.Readiness.Reason != webhooksv1alpha1.CircuitOpenReason {
			t.Fatalf("during the cool-down: %v %q, want held by CircuitOpen", out.Kind, out.Readiness.Reason)
		}
		time.Sleep(time.Minute)
		sender.setAnswer(ok)
		if out := run("probe"); out.Kind != Sent || out.Circuit != CircuitClosed {
			t.Fatalf("probe after the cool-down: %v, circuit %v, want sent and closed", out.Kind, out.Circuit)
		}
	})
}

func TestBlockedProbeDoesNotWedgeTheCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		// A cool-down much shorter than the timeout: only a probe that reported back lets the next one
		// through this soon (the safety net for a probe that never reports waits twice the timeout).
		ep.FailureThreshold, ep.MaxInFlight, ep.Cooldown, ep.Request.Timeout = 1, 1, 5*time.Second, time.Minute
		eps := endpointsOf(ep)
		sender := newFakeSender(time.Second, failed)
		e := newTestEngine(sender, eps, 8, 8)
		submit := func(event string) Outcome { return sendOne(t, e, ep, event) }
		submit("opens")
		time.Sleep(ep.Cooldown)
		// The probe's dial is refused by the egress policy.
		sender.setAnswer(func(delivery.Request) delivery.Result {
			return delivery.Result{Blocked: true, Error: "destination blocked"}
		})
		if out := submit("probe"); out.Kind != Sent || !out.Result.Blocked {
			t.Fatalf("probe: %+v, want a blocked send", out)
		}
		// The URL is fixed: a new generation, which lifts the block.
		eps.edit(ep.Key, func(e *Endpoint) { e.Generation, e.Request.URL = 2, "https://fixed.example/hook" })
		ep.Generation = 2
		sender.setAnswer(ok)
		time.Sleep(ep.Cooldown)
		if out := submit("after-fix"); out.Kind != Sent || out.Circuit != CircuitClosed {
			t.Fatalf("after the URL was fixed: %v circuit %v, want a probe that closes the circuit", out.Kind, out.Circuit)
		}
		if e.OpenCircuits() != 0 {
			t.Fatalf("%d circuits open, want 0", e.OpenCircuits())
		}
	})
}

func TestUnencodablePayloadEndsWithoutTouchingTheCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		ep.ConsecutiveFailures, ep.FailureThreshold = 5, 3 // restarted with the circuit open: the next attempt is the probe
		sender := newFakeSender(time.Second, ok)
		e := newTestEngine(sender, endpointsOf(ep), 8, 8)
		a := attemptFor(ep, "bad", "id-bad")
		a.Body = func() ([]byte, error) { return nil, errors.New("extractionErrors[0] is not valid JSON") }
		e.Submit(a)
		if out := outcome(t, e, a.Event); out.Kind != Unencodable {
			t.Fatalf("outcome %v, want Unencodable", out.Kind)
		}
		// The probe was not used up: the next attempt goes out as the probe and closes the circuit.
		e.Submit(attemptFor(ep, "good", "id-good"))
		time.Sleep(2 * time.Second)
		if out := outcome(t, e, types.NamespacedName{Namespace: "acme", Name: "good"}); out.Kind != Sent || out.Circuit != CircuitClosed {
			t.Fatalf("next attempt: %v circuit %v, want sent, circuit closed", out.Kind, out.Circuit)
		}
	})
}

func TestStopStartsNothingNewAndWaitsForAttemptsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eps := endpointsOf()
		all := make([]Endpoint, 0, 3)
		for _, name := range []string{"a", "b", "c"} {
			ep := endpoint("acme", name, types.UID("uid-"+name))
			eps.set(ep)
			all = append(all, ep)
		}
		sender := newFakeSender(5*time.Second, ok)
		// One global slot: two attempts wait for it when the manager stops.
		e := newTestEngine(sender, eps, 1, 1)
		for _, ep := range all {
			e.Submit(attemptFor(ep, "ev-"+ep.Key.Name, "id-"+ep.Key.Name))
		}
		synctest.Wait()
		events := e.Stop()
		if got := sender.count(); got != 1 {
			t.Fatalf("%d attempts started, want 1: nothing starts after Stop", got)
		}
		if len(events) != 1 || events[0].Name != "ev-a" {
			t.Fatalf("events with outcomes to record: %v, want [acme/ev-a]", events)
		}
		for _, id := range []string{"id-b", "id-c"} {
			if e.Busy(id) {
				t.Errorf("%s still busy after Stop dropped it; the next leader must be able to send it", id)
			}
		}
	})
}

func TestNamespaceShareKeepsOtherTenantsServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eps := endpointsOf()
		hanging := []Endpoint{endpoint("tenant-a", "slow", "uid-a"), endpoint("tenant-b", "slow", "uid-b")}
		healthy := endpoint("tenant-c", "fast", "uid-c")
		for _, ep := range append(hanging, healthy) {
			ep.MaxInFlight = 256
			eps.set(ep)
		}
		sender := newFakeSender(time.Second, func(r delivery.Request) delivery.Result {
			if r.URL != healthy.Request.URL {
				time.Sleep(time.Hour) // hangs far past anything this test waits for
			}
			return ok(r)
		})
		e := newTestEngine(sender, eps, 8, 3)
		for _, ep := range hanging {
			ep.MaxInFlight = 256
			for i := range 20 {
				e.Submit(attemptFor(ep, "ev", ep.Key.Namespace+string(rune('a'+i))))
			}
		}
		healthy.MaxInFlight = 256
		e.Submit(attemptFor(healthy, "ev-fast", "fast-1"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if out := e.Outcomes(types.NamespacedName{Namespace: "tenant-c", Name: "ev-fast"}); len(out) != 1 || !out[0].Result.Success {
			t.Fatalf("the healthy tenant's delivery did not complete while two tenants hang: %+v", out)
		}
		for _, ep := range hanging {
			if got := sender.peak[ep.Request.URL]; got != 3 {
				t.Errorf("namespace %s held %d slots at once, want its share: 3", ep.Key.Namespace, got)
			}
		}
		e.Stop()
	})
}

func TestEndpointStateIsKeyedByUIDAndReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-old")
		ep.FailureThreshold, ep.MaxInFlight = 1, 1
		eps := endpointsOf(ep)
		sender := newFakeSender(time.Second, failed)
		e := newTestEngine(sender, eps, 8, 8)
		e.Submit(attemptFor(ep, "ev", "id-1"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !e.CircuitOpen("uid-old") {
			t.Fatal("circuit of the old endpoint should be open")
		}
		// Deleted and recreated under the same name: a new UID starts fresh.
		recreated := endpoint("acme", "ep", "uid-new")
		eps.set(recreated)
		e.ObserveEndpoint(recreated.Key, recreated.UID)
		if e.CircuitOpen("uid-old") || e.CircuitOpen("uid-new") {
			t.Fatal("the recreated endpoint inherited the old circuit")
		}
		if len(sender.forgot) != 1 || sender.forgot[0] != "uid-old" {
			t.Fatalf("TLS pools released: %v, want [uid-old]", sender.forgot)
		}
		e.ForgetEndpoint(recreated.Key)
		e.Discard(types.NamespacedName{Namespace: "acme", Name: "ev"})
		if st := e.Stats(); st.Health != 0 || st.Endpoints != 0 || st.Lanes != 0 || st.Busy != 0 {
			t.Fatalf("state left after the endpoint went: %+v", st)
		}
	})
}

func TestOneTestWebhookPerValueEvenWhenAskedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		sender := newFakeSender(time.Second, ok)
		e := newTestEngine(sender, endpointsOf(ep), 8, 8)
		body := func() ([]byte, error) { return []byte(`{}`), nil }
		if !e.StartTest(ep.Key, ep.UID, "v1", 4, body, "whtest_1") {
			t.Fatal("first StartTest refused")
		}
		if e.StartTest(ep.Key, ep.UID, "v1", 4, body, "whtest_1") {
			t.Fatal("second StartTest of the same value accepted while running")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		state, result := e.Test(ep.UID, "v1")
		if state != TestFinished || !result.Success {
			t.Fatalf("test state %v result %+v, want finished and successful", state, result)
		}
		e.RecordedTest(ep.UID, "v1")
		// A reconcile that reads a cached copy older than the lastTest write asks again.
		if state, _ := e.Test(ep.UID, "v1"); state != TestRecorded {
			t.Fatalf("after recording: state %v, want TestRecorded", state)
		}
		if sender.count() != 1 || !sender.sent[0].Test {
			t.Fatalf("%d requests, want exactly one test request", sender.count())
		}
	})
}

func TestWakesNeverBlock(t *testing.T) {
	w := newWakes()
	for i := range 100000 {
		w.add(types.NamespacedName{Namespace: "acme", Name: string(rune('a' + i%26))})
	}
	if got := len(w.Take()); got != 26 {
		t.Fatalf("took %d keys, want 26 distinct", got)
	}
}

func TestSummaryIsConfirmedOnlyAfterItWasWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		sender := newFakeSender(time.Second, failed)
		e := newTestEngine(sender, endpointsOf(ep), 8, 8)
		e.Submit(attemptFor(ep, "ev", "id-1"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		s, due, _ := e.SummaryDue(ep.UID, time.Second)
		if !due || s.Failures != 1 {
			t.Fatalf("summary due %t with %d failures, want due with 1", due, s.Failures)
		}
		// The status patch failed: nothing confirmed, so the same summary is due again.
		if again, due, _ := e.SummaryDue(ep.UID, time.Second); !due || again.Failures != 1 {
			t.Fatal("the summary was lost after an unconfirmed write")
		}
		e.Flushed(ep.UID, s)
		if _, due, _ := e.SummaryDue(ep.UID, time.Second); due {
			t.Fatal("summary still due after it was confirmed")
		}
	})
}

func TestADestinationRefusedAtDialTimeIsNotDialledAgainUntilItsURLChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		eps := endpointsOf(ep)
		sender := newFakeSender(time.Second, func(delivery.Request) delivery.Result {
			return delivery.Result{Blocked: true, Error: "destination blocked: 10.0.0.1 is private"}
		})
		e := newTestEngine(sender, eps, 8, 8)
		if out := sendOne(t, e, ep, "first"); out.Kind != Sent || !out.Result.Blocked {
			t.Fatalf("first attempt: %+v, want a blocked send", out)
		}
		out := sendOne(t, e, ep, "second")
		if out.Kind != Held || out.Readiness.Reason != webhooksv1alpha1.DestinationBlockedReason || sender.count() != 1 {
			t.Fatalf("second attempt: %v %q after %d dials, want held as DestinationBlocked without a dial", out.Kind, out.Readiness.Reason, sender.count())
		}
		// spec.url changed: a new generation is dialled again.
		eps.edit(ep.Key, func(e *Endpoint) { e.Generation, e.Request.URL = 2, "https://fixed.example/hook" })
		ep.Generation = 2
		sender.setAnswer(ok)
		if out := sendOne(t, e, ep, "third"); out.Kind != Sent || !out.Result.Success {
			t.Fatalf("after the URL changed: %+v, want sent", out)
		}
	})
}
