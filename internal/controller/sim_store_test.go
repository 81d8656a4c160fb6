package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// simStore is the simulated API server and informer cache. The API side holds the latest version of
// every object; the cache side serves, per object, a version that may lag behind (as an informer does),
// and catches up when the simulation says so. Watch notifications fire when the cache catches up, as
// they do in controller-runtime. Faults (timeouts, conflicts, errors) come from the simulation's
// random number generator, on the calls the reconcilers make.
type simStore struct {
	rng     *rand.Rand
	faults  bool
	rv      int
	uid     int
	now     func() time.Time
	objects map[simKey][]client.Object // versions, oldest first; a nil version is a deletion
	cached  map[simKey]int             // index into objects[key] that the cache serves
	keys    []simKey                   // every key, sorted
	// onCacheChange is called with the old and new cached version (either may be nil).
	onCacheChange func(oldObj, newObj client.Object)
	// onDelete is called when an object is deleted through the API, before the cache sees it.
	onDelete func(obj client.Object)
	// onPut is called with every version written through the API.
	onPut func(obj client.Object)
	// onOversize is called with an object whose write was refused because it would exceed
	// simMaxObjectBytes, and the size it would have had.
	onOversize func(obj client.Object, size int)
}

type simKey struct {
	kind string
	types.NamespacedName
}

func kindOf(obj any) string {
	switch o := obj.(type) {
	case *webhooksv1alpha1.DocumentEvent, *webhooksv1alpha1.DocumentEventList:
		return "DocumentEvent"
	case *webhooksv1alpha1.WebhookEndpoint, *webhooksv1alpha1.WebhookEndpointList:
		return "WebhookEndpoint"
	case *metav1.PartialObjectMetadata:
		// Status patches of events go through their metadata; the cache keeps Secrets as metadata.
		if o.Kind == "DocumentEvent" {
			return "DocumentEvent"
		}
		return "Secret"
	case *corev1.Secret:
		return "Secret"
	}
	panic(fmt.Sprintf("simStore: unsupported type %T", obj))
}

func newSimStore(rng *rand.Rand, now func() time.Time) *simStore {
	return &simStore{rng: rng, now: now, objects: map[simKey][]client.Object{}, cached: map[simKey]int{}}
}

func (s *simStore) latest(k simKey) client.Object {
	versions := s.objects[k]
	if len(versions) == 0 {
		return nil
	}
	return versions[len(versions)-1]
}

func (s *simStore) cachedVersion(k simKey) client.Object {
	versions := s.objects[k]
	i, ok := s.cached[k]
	if !ok || i < 0 || len(versions) == 0 {
		return nil
	}
	return versions[i]
}

func (s *simStore) nextRV() string {
	s.rv++
	return strconv.Itoa(s.rv)
}

// put stores a new version through the API.
func (s *simStore) put(obj client.Object) {
	k := simKey{kindOf(obj), client.ObjectKeyFromObject(obj)}
	obj.SetResourceVersion(s.nextRV())
	stored := obj.DeepCopyObject().(client.Object)
	s.objects[k] = append(s.objects[k], stored)
	if _, ok := s.cached[k]; !ok {
		s.cached[k] = -1
		i, _ := slices.BinarySearchFunc(s.keys, k, compareSimKeys)
		s.keys = slices.Insert(s.keys, i, k)
	}
	if s.onPut != nil {
		s.onPut(stored)
	}
}

// create adds a new object with a fresh UID and generation 1.
func (s *simStore) create(obj client.Object) {
	if s.latest(simKey{kindOf(obj), client.ObjectKeyFromObject(obj)}) != nil {
		panic("simStore: create of an existing object " + obj.GetName())
	}
	s.uid++
	obj.SetUID(types.UID(fmt.Sprintf("uid-%d", s.uid)))
	obj.SetGeneration(1)
	obj.SetCreationTimestamp(metav1.NewTime(s.now()))
	if ev, ok := obj.(*webhooksv1alpha1.DocumentEvent); ok {
		ev.Status.ObservedGeneration = -1
	}
	s.put(obj)
}

// updateSpec stores an edit of spec, labels or annotations; a spec edit bumps the generation.
func (s *simStore) updateSpec(obj client.Object, specChanged bool) {
	if specChanged {
		obj.SetGeneration(obj.GetGeneration() + 1)
	}
	s.put(obj)
}

// remove deletes an object through the API.
func (s *simStore) remove(k simKey) {
	if obj := s.latest(k); obj != nil {
		s.objects[k] = append(s.objects[k], nil)
		if s.onDelete != nil {
			s.onDelete(obj)
		}
	}
}

// catchUp moves the cache of one object to its latest version and fires the watch.
func (s *simStore) catchUp(k simKey) {
	versions := s.objects[k]
	last := len(versions) - 1
	if s.cached[k] == last {
		return
	}
	old := s.cachedVersion(k)
	s.cached[k] = last
	if old == nil && versions[last] == nil {
		return // created and deleted again before the cache saw it
	}
	if s.onCacheChange != nil {
		s.onCacheChange(old, versions[last])
	}
}

// catchUpAll brings the whole cache up to date, as a fresh informer list does.
func (s *simStore) catchUpAll() {
	for _, k := range s.sortedKeys() {
		s.catchUp(k)
	}
}

// catchUpSome brings each lagging object up to date with probability p.
func (s *simStore) catchUpSome(p float64) {
	for _, k := range s.sortedKeys() {
		if s.cached[k] != len(s.objects[k])-1 && s.rng.Float64() < p {
			s.catchUp(k)
		}
	}
}

// sortedKeys returns every key in a fixed order; callers must not change it.
func (s *simStore) sortedKeys() []simKey { return s.keys }

func compareSimKeys(a, b simKey) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// fault returns an injected API error with probability p, or nil.
func (s *simStore) fault(p float64, k simKey) error {
	if !s.faults || s.rng.Float64() >= p {
		return nil
	}
	gr := schema.GroupResource{Group: webhooksv1alpha1.GroupVersion.Group, Resource: k.kind}
	switch s.rng.IntN(3) {
	case 0:
		return apierrors.NewConflict(gr, k.Name, fmt.Errorf("the object has been modified"))
	case 1:
		return apierrors.NewTimeoutError("request timed out", 1)
	}
	return apierrors.NewInternalError(fmt.Errorf("etcdserver: leader changed"))
}

// simClient is a client.Client over a simStore: reads from the cache side (or, when live, from the
// API side), writes to the API side. Only the calls the operator makes are implemented.
type simClient struct {
	client.Client
	store *simStore
	live  bool
	// faultRate is the probability of an injected error per call.
	faultRate float64
	// failLists makes every List fail, as a cache error does.
	failLists bool
}

func (c *simClient) read(k simKey) client.Object {
	if c.live {
		return c.store.latest(k)
	}
	return c.store.cachedVersion(k)
}

func (c *simClient) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	k := simKey{kindOf(obj), key}
	if err := c.store.fault(c.faultRate, k); err != nil {
		return err
	}
	found := c.read(k)
	if found == nil {
		return apierrors.NewNotFound(schema.GroupResource{Resource: k.kind}, key.Name)
	}
	if meta, ok := obj.(*metav1.PartialObjectMetadata); ok {
		found.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta).DeepCopyInto(&meta.ObjectMeta)
		return nil
	}
	return copyInto(found, obj)
}

func copyInto(src, dst client.Object) error {
	switch d := dst.(type) {
	case *webhooksv1alpha1.DocumentEvent:
		src.(*webhooksv1alpha1.DocumentEvent).DeepCopyInto(d)
	case *webhooksv1alpha1.WebhookEndpoint:
		src.(*webhooksv1alpha1.WebhookEndpoint).DeepCopyInto(d)
	case *corev1.Secret:
		src.(*corev1.Secret).DeepCopyInto(d)
	case *metav1.PartialObjectMetadata:
		src.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta).DeepCopyInto(&d.ObjectMeta)
	default:
		return fmt.Errorf("simClient: cannot copy into %T", dst)
	}
	return nil
}

func (c *simClient) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := &client.ListOptions{}
	o.ApplyOptions(opts)
	kind := kindOf(list)
	if c.failLists {
		return apierrors.NewInternalError(fmt.Errorf("simulated cache failure"))
	}
	if err := c.store.fault(c.faultRate, simKey{kind: kind}); err != nil {
		return err
	}
	var items []client.Object
	keys := c.store.sortedKeys()
	// Keys sort by kind, then namespace: start at the first key of the kind (and namespace).
	first, _ := slices.BinarySearchFunc(keys, simKey{kind: kind, NamespacedName: types.NamespacedName{Namespace: o.Namespace}}, compareSimKeys)
	for _, k := range keys[first:] {
		if k.kind != kind || (o.Namespace != "" && k.Namespace != o.Namespace) {
			break
		}
		obj := c.read(k)
		if obj == nil || !matchesFields(obj, o.FieldSelector) {
			continue
		}
		items = append(items, obj)
	}
	switch l := list.(type) {
	case *webhooksv1alpha1.DocumentEventList:
		for _, obj := range items {
			l.Items = append(l.Items, *obj.(*webhooksv1alpha1.DocumentEvent).DeepCopy())
		}
	case *webhooksv1alpha1.WebhookEndpointList:
		for _, obj := range items {
			l.Items = append(l.Items, *obj.(*webhooksv1alpha1.WebhookEndpoint).DeepCopy())
		}
	}
	return nil
}

// matchesFields evaluates the operator's field indexes.
func matchesFields(obj client.Object, sel fields.Selector) bool {
	if sel == nil || sel.Empty() {
		return true
	}
	for _, req := range sel.Requirements() {
		var values []string
		switch req.Field {
		case waitingOnIndex:
			values = waitingOnEndpoints(obj)
		case secretRefIndex:
			values = referencedSecrets(obj.(*webhooksv1alpha1.WebhookEndpoint))
		default:
			panic("simClient: unknown field index " + req.Field)
		}
		found := false
		for _, v := range values {
			found = found || v == req.Value
		}
		if !found {
			return false
		}
	}
	return true
}

func (c *simClient) Delete(_ context.Context, obj client.Object, opts ...client.DeleteOption) error {
	k := simKey{kindOf(obj), client.ObjectKeyFromObject(obj)}
	if err := c.store.fault(c.faultRate, k); err != nil {
		return err
	}
	current := c.store.latest(k)
	if current == nil {
		return apierrors.NewNotFound(schema.GroupResource{Resource: k.kind}, k.Name)
	}
	o := &client.DeleteOptions{}
	o.ApplyOptions(opts)
	if p := o.Preconditions; p != nil {
		if (p.UID != nil && *p.UID != current.GetUID()) ||
			(p.ResourceVersion != nil && *p.ResourceVersion != current.GetResourceVersion()) {
			return apierrors.NewConflict(schema.GroupResource{Resource: k.kind}, k.Name, fmt.Errorf("precondition failed"))
		}
	}
	c.store.remove(k)
	return nil
}

func (c *simClient) Status() client.SubResourceWriter { return &simStatusWriter{c: c} }

type simStatusWriter struct {
	client.SubResourceWriter
	c *simClient
}

// Patch applies a merge patch to the status only, as the status subresource does, and rejects a status
// that breaks the CRD's limits, as the API server's schema validation would.
func (w *simStatusWriter) Patch(_ context.Context, obj client.Object, patch client.Patch, _ ...client.SubResourcePatchOption) error {
	k := simKey{kindOf(obj), client.ObjectKeyFromObject(obj)}
	if err := w.c.store.fault(w.c.faultRate, k); err != nil {
		return err
	}
	current := w.c.store.latest(k)
	if current == nil {
		return apierrors.NewNotFound(schema.GroupResource{Resource: k.kind}, k.Name)
	}
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	var precondition struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &precondition); err == nil && precondition.Metadata.ResourceVersion != "" &&
		precondition.Metadata.ResourceVersion != current.GetResourceVersion() {
		return apierrors.NewConflict(schema.GroupResource{Resource: k.kind}, k.Name, fmt.Errorf("the object has been modified"))
	}
	original, err := json.Marshal(current)
	if err != nil {
		return err
	}
	merged, err := jsonpatch.MergePatch(original, data)
	if err != nil {
		return err
	}
	next := current.DeepCopyObject().(client.Object)
	// A zero object: decoding into a copy of current would keep members the patch removed.
	patched := reflect.New(reflect.TypeOf(current).Elem()).Interface().(client.Object)
	if err := json.Unmarshal(merged, patched); err != nil {
		return err
	}
	switch n := next.(type) {
	case *webhooksv1alpha1.DocumentEvent:
		n.Status = patched.(*webhooksv1alpha1.DocumentEvent).Status
		if err := validateEventStatus(&n.Status); err != nil {
			return apierrors.NewInvalid(schema.GroupKind{Kind: k.kind}, k.Name, nil)
		}
	case *webhooksv1alpha1.WebhookEndpoint:
		n.Status = patched.(*webhooksv1alpha1.WebhookEndpoint).Status
		if t := n.Status.LastTest; t != nil && len(t.Error) > webhooksv1alpha1.MaxDeliveryErrorLength {
			return apierrors.NewInvalid(schema.GroupKind{Kind: k.kind}, k.Name, nil)
		}
	}
	// etcd refuses a request over its --max-request-bytes; the API server passes its error on as a 500
	// with no reason (seen with kube-apiserver 1.37 and etcd 3.6).
	if stored, err := json.Marshal(next); err != nil {
		return err
	} else if len(stored) > simMaxObjectBytes {
		if w.c.store.onOversize != nil {
			w.c.store.onOversize(next, len(stored))
		}
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError,
			Message: "etcdserver: request is too large"}}
	}
	w.c.store.put(next)
	return copyInto(next, obj)
}

// validateEventStatus checks the limits of the DocumentEvent status schema.
func validateEventStatus(st *webhooksv1alpha1.DocumentEventStatus) error {
	if len(st.Deliveries) > webhooksv1alpha1.MaxDeliveriesPerEvent {
		return fmt.Errorf("status.deliveries: %d items", len(st.Deliveries))
	}
	for _, d := range st.Deliveries {
		if len(d.LastError) > webhooksv1alpha1.MaxDeliveryErrorLength {
			return fmt.Errorf("status.deliveries[].lastError: %d characters", len(d.LastError))
		}
	}
	for _, c := range st.Conditions {
		if len(c.Message) > webhooksv1alpha1.MaxConditionMessageLength {
			return fmt.Errorf("status.conditions[].message: %d characters", len(c.Message))
		}
	}
	return nil
}
