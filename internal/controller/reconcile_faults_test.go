package controller

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/engine"
)

// These tests put one fault at the wrong moment, on the simulation's world, and check what the
// receiver and the status see.

// quietSimulation is a simulated world with no random faults, operations or cache lag of its own.
func quietSimulation(t *testing.T) *simulation {
	sim := newSimulation(t, 1)
	sim.store.faults = false
	for _, name := range []string{"ep-0", "ep-1", "ep-2"} {
		sim.recv.setMode(name, modeOK)
	}
	sim.store.catchUpAll()
	sim.reconcileDue()
	return sim
}

// finishAttempts completes every request in flight and runs what the engine starts next.
func (sim *simulation) finishAttempts() {
	for sim.recv.completeNext() {
		sim.runAttempts()
	}
}

func TestOutcomesSurviveAReconcileThatFailsBeforeRecordingThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := quietSimulation(t)
		sim.createEvent("tenant-0")
		key := types.NamespacedName{Namespace: "tenant-0", Name: "ev-1"}
		sim.store.catchUpAll()
		sim.reconcile(simRequest{reqEvent, key})
		sim.runAttempts()
		sim.finishAttempts()
		sim.collectWakes()
		if n := len(sim.mgr.shared.engine.Outcomes(key)); n != simEndpointsPerNS {
			t.Fatalf("%d outcomes waiting, want %d", n, simEndpointsPerNS)
		}

		cached := sim.mgr.events.Client.(*simClient)
		cached.failLists = true
		if _, err := sim.mgr.events.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err == nil {
			t.Fatal("the reconcile should fail when the cache cannot list endpoints")
		}
		if n := len(sim.mgr.shared.engine.Outcomes(key)); n != simEndpointsPerNS {
			t.Fatalf("after the failed reconcile %d outcomes are left, want all %d: they were not recorded", n, simEndpointsPerNS)
		}

		cached.failLists = false
		sim.store.catchUpAll()
		sim.reconcile(simRequest{reqEvent, key})
		sim.runAttempts()
		ev := sim.store.latest(simKey{"DocumentEvent", key}).(*webhooksv1alpha1.DocumentEvent)
		if ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered {
			t.Fatalf("phase %s, want Delivered: %s", ev.Status.Phase, deliverySummary(ev))
		}
		for _, d := range ev.Status.Deliveries {
			if d.Attempts != 1 {
				t.Errorf("delivery to %s records %d attempts, want 1", d.Endpoint, d.Attempts)
			}
		}
		if sim.recv.total != simEndpointsPerNS {
			t.Fatalf("receivers got %d requests, want %d: nothing is sent again", sim.recv.total, simEndpointsPerNS)
		}
	})
}

func TestOneTestWebhookPerValueWhenTheCacheLagsBehindLastTest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := quietSimulation(t)
		key := types.NamespacedName{Namespace: "tenant-0", Name: "ep-0"}
		sim.requestTest("tenant-0", "ep-0")
		sim.store.catchUpAll()
		sim.reconcile(simRequest{reqEndpoint, key})
		sim.runAttempts()
		sim.finishAttempts()
		sim.store.catchUpAll()
		before := sim.store.cachedVersion(simKey{"WebhookEndpoint", key})

		// The result is recorded in status.lastTest, but the cache keeps serving the copy without it.
		sim.reconcile(simRequest{reqEndpoint, key})
		recorded := sim.store.latest(simKey{"WebhookEndpoint", key}).(*webhooksv1alpha1.WebhookEndpoint)
		if recorded.Status.LastTest == nil || !recorded.Status.LastTest.Success {
			t.Fatalf("lastTest %+v, want a successful test recorded", recorded.Status.LastTest)
		}
		if sim.store.cachedVersion(simKey{"WebhookEndpoint", key}) != before {
			t.Fatal("the cache moved; this test needs it to lag")
		}
		for range 3 {
			sim.reconcile(simRequest{reqEndpoint, key})
			sim.runAttempts()
			sim.finishAttempts()
		}
		if sim.recv.total != 1 {
			t.Fatalf("receivers got %d test requests for one annotation value, want 1", sim.recv.total)
		}
	})
}

// An attempt held because its endpoint was suspended when it was to start reports back while the
// endpoint is resumed: the reconcile that the resume causes records the held outcome, but cannot submit
// the delivery again before the outcome is acknowledged. Nothing else will change: it must look again
// by itself.
func TestAHeldOutcomeRecordedAsItsEndpointResumesIsSentWithoutAnotherChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := quietSimulation(t)
		// One target, so that no other delivery's outcome wakes the event.
		sim.deleteEndpoint("tenant-0", "ep-1")
		sim.deleteEndpoint("tenant-0", "ep-2")
		sim.store.catchUpAll()
		sim.reconcileDue()
		sim.createEvent("tenant-0")
		key := types.NamespacedName{Namespace: "tenant-0", Name: fmt.Sprintf("ev-%d", sim.created)}
		sim.store.catchUpAll()
		sim.reconcile(simRequest{reqEvent, key})

		setSuspend := func(suspend bool) {
			ep := sim.endpointByName("tenant-0", "ep-0").DeepCopy()
			ep.Spec.Suspend = suspend
			sim.store.updateSpec(ep, true)
		}
		setSuspend(true) // seen by the attempt's lookup, not yet by the cache
		sim.runAttempts()
		if outs := sim.mgr.shared.engine.Outcomes(key); len(outs) != 1 || outs[0].Kind != engine.Held {
			t.Fatalf("outcomes %+v, want one held attempt", outs)
		}
		setSuspend(false)
		sim.store.catchUpAll() // the resume reaches the cache and wakes the event
		sim.reconcileDue()
		sim.advance(10 * time.Second)
		sim.finishAttempts()
		sim.advance(10 * time.Second)

		ev := sim.store.latest(simKey{"DocumentEvent", key}).(*webhooksv1alpha1.DocumentEvent)
		if ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered || sim.recv.total != 1 {
			t.Fatalf("phase %s after %d requests, want Delivered after 1: %s", ev.Status.Phase, sim.recv.total, deliverySummary(ev))
		}
	})
}

// A receiver answers 503 with Retry-After to an attempt that finishes while the manager shuts down
// gracefully: the controllers have stopped, so the pause is written to the endpoint's status by the
// shutdown itself, and the next leader honours it.
func TestARetryAfterPauseLearntDuringShutdownIsWrittenBeforeTheManagerExits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := quietSimulation(t)
		sim.recv.setMode("ep-0", modeThrottle)
		sim.recv.retryAfter = time.Minute
		sim.createEvent("tenant-0")
		key := types.NamespacedName{Namespace: "tenant-0", Name: fmt.Sprintf("ev-%d", sim.created)}
		sim.store.catchUpAll()
		sim.reconcile(simRequest{reqEvent, key})
		sim.runAttempts()
		start := time.Now()

		sim.gracefulRestart() // the attempts in flight finish while the manager stops

		ep := sim.endpointByName("tenant-0", "ep-0")
		// The pause is capped by spec.retry.maxInterval.
		want := start.Add(min(time.Minute, ep.GetMaxInterval()))
		if until := ep.Status.RetryAfterUntil; until == nil || until.Before(&metav1.Time{Time: want}) {
			t.Fatalf("status.retryAfterUntil %v after the shutdown, want at least %s", until, want)
		}
	})
}
