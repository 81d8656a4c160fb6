package controller

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// staleRetry is how soon a reconcile that read an out-of-date object from the cache tries again.
const staleRetry = 50 * time.Millisecond

// freshnessGuard remembers the resourceVersion of each status patch this process made, so that a
// reconcile that reads an older copy from the informer cache waits for the cache instead of repeating
// attempts that are already recorded. Entries are dropped once the cache has caught up.
//
// Writes by an earlier leader are another matter: a standby that takes over has watched all along, and
// its cache may lag behind the last status writes of the leader it replaces (an API server outage makes
// that lag long). So the first time this process would act on an event that existed before it became
// leader, it reads the event from the API server once (liveChecked) and waits for the cache to reach
// that version.
type freshnessGuard struct {
	mu      sync.Mutex
	written map[types.NamespacedName]uint64
	checked map[types.NamespacedName]struct{}
}

func newFreshnessGuard() *freshnessGuard {
	return &freshnessGuard{written: map[types.NamespacedName]uint64{}, checked: map[types.NamespacedName]struct{}{}}
}

// liveChecked reports whether the event was already read from the API server in this process.
func (g *freshnessGuard) liveChecked(key types.NamespacedName) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.checked[key]
	return ok
}

// readLive records the version the API server returned for the event.
func (g *freshnessGuard) readLive(key types.NamespacedName, resourceVersion string) {
	g.mu.Lock()
	g.checked[key] = struct{}{}
	g.mu.Unlock()
	g.wrote(key, resourceVersion)
}

// wrote records the resourceVersion returned by a successful patch.
func (g *freshnessGuard) wrote(key types.NamespacedName, resourceVersion string) {
	rv, err := strconv.ParseUint(resourceVersion, 10, 64)
	if err != nil {
		return
	}
	g.mu.Lock()
	g.written[key] = rv
	g.mu.Unlock()
}

// stale reports whether the cached copy is older than our last write, and how long to wait.
// resourceVersions are compared as numbers, as etcd-backed API servers issue them; a version that is
// not a number disables the check rather than block deliveries.
func (g *freshnessGuard) stale(key types.NamespacedName, cachedVersion string) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	written, ok := g.written[key]
	if !ok {
		return 0, false
	}
	cached, err := strconv.ParseUint(cachedVersion, 10, 64)
	if err != nil || cached >= written {
		delete(g.written, key)
		return 0, false
	}
	return staleRetry, true
}

func (g *freshnessGuard) forget(key types.NamespacedName) {
	g.mu.Lock()
	delete(g.written, key)
	delete(g.checked, key)
	g.mu.Unlock()
}
