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
type freshnessGuard struct {
	mu      sync.Mutex
	written map[types.NamespacedName]uint64
}

func newFreshnessGuard() *freshnessGuard {
	return &freshnessGuard{written: map[types.NamespacedName]uint64{}}
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
	g.mu.Unlock()
}
