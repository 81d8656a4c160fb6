package main

import (
	"context"
	"fmt"
	"time"
)

// tenant is one namespace with its receivers, endpoints and a fresh manager process.
type tenant struct {
	ns          string
	healthy     []*receiver
	hanging     []*receiver
	m           *manager
	maxInFlight int32
}

// newTenant creates the namespace, one fast receiver and endpoint per healthy, one never-answering
// receiver and endpoint (with spec.timeout hangTimeout) per hanging, starts a manager and waits until it
// marked every endpoint Ready.
func (h *harness) newTenant(ctx context.Context, ns string, healthy, hanging int, hangTimeout time.Duration) (_ *tenant, err error) {
	t, err := h.prepareTenant(ctx, ns, healthy, hanging, hangTimeout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			h.abandon(t)
		}
	}()
	m, err := h.startManager(ctx, ns)
	if err != nil {
		return nil, err
	}
	t.m = m
	if t.maxInFlight, err = h.waitEndpointsReady(ctx, ns, healthy+hanging); err != nil {
		return nil, withLog(err, t.m.logPath)
	}
	return t, nil
}

// prepareTenant is newTenant without the manager: for scenarios whose manager serves several tenants or
// starts later.
func (h *harness) prepareTenant(ctx context.Context, ns string, healthy, hanging int, hangTimeout time.Duration) (_ *tenant, err error) {
	t := &tenant{ns: ns}
	defer func() {
		if err != nil {
			h.abandon(t)
		}
	}()
	if err := h.setupNamespace(ctx, ns); err != nil {
		return nil, err
	}
	for i := range healthy + hanging {
		hang := i >= healthy
		r, err := newReceiver(hang)
		if err != nil {
			return nil, err
		}
		name, timeout := fmt.Sprintf("fast-%02d", i), 10*time.Second
		if hang {
			t.hanging = append(t.hanging, r)
			name, timeout = fmt.Sprintf("hang-%02d", i-healthy), hangTimeout
		} else {
			t.healthy = append(t.healthy, r)
		}
		if err := h.createEndpoint(ctx, signedEndpoint(ns, name, r.URL, timeout)); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// finish ends a scenario cleanly: hanging requests are dropped, the manager is stopped with SIGTERM,
// the receivers close, and the events are deleted so that later managers do not cache them.
func (h *harness) finish(ctx context.Context, t *tenant) error {
	for _, r := range t.hanging {
		r.close()
	}
	h.stopManager(t.m)
	for _, r := range t.healthy {
		r.close()
	}
	// Minutes only for a namespace with tens of thousands of events (history).
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	return h.deleteEvents(cleanup, t.ns)
}

// abandon is finish for the error path: no waiting, nothing left running.
func (h *harness) abandon(t *tenant) {
	if t == nil {
		return
	}
	for _, r := range append(append([]*receiver(nil), t.hanging...), t.healthy...) {
		r.close()
	}
	if t.m != nil {
		h.killManager(t.m)
	}
}

// waitReceipts waits until each receiver got n distinct documents and returns when the last of them
// arrived.
func waitReceipts(ctx context.Context, recvs []*receiver, n int) (time.Time, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var last time.Time
		done, got := true, 0
		for _, r := range recvs {
			d := r.distinct()
			got += min(d, n)
			if d < n {
				done = false
				continue
			}
			if at := r.arrival(n - 1); at.After(last) {
				last = at
			}
		}
		if done {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d deliveries reached the receivers: %w", got, n*len(recvs), context.Cause(ctx))
		case <-tick.C:
		}
	}
}
