package engine

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// Wakes is a set of object keys worth a reconcile. Adding never blocks, and a key added many times
// before it is taken is taken once, so a burst of results never stalls an attempt or shutdown.
type Wakes struct {
	mu     sync.Mutex
	keys   map[types.NamespacedName]struct{}
	signal chan struct{}
}

func newWakes() *Wakes {
	return &Wakes{keys: map[types.NamespacedName]struct{}{}, signal: make(chan struct{}, 1)}
}

func (w *Wakes) add(key types.NamespacedName) {
	w.mu.Lock()
	w.keys[key] = struct{}{}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// Signal receives a value after keys were added.
func (w *Wakes) Signal() <-chan struct{} { return w.signal }

// Take returns and removes the keys, sorted.
func (w *Wakes) Take() []types.NamespacedName {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(w.keys))
	for k := range w.keys {
		out = append(out, k)
	}
	clear(w.keys)
	slices.SortFunc(out, compareKeys)
	return out
}
