package controller

// CPU per delivered event, the parts that happen in the manager outside the delivery itself: decoding
// the watch events of an event, decoding the response of its status patch, building that patch, and
// copying the event out of the cache. Each benchmark works on a real event as the API server returns
// it (testdata/delivered_event.json: the benchmark's typical invoice after the operator delivered it,
// 2.7 KB of JSON of which 1.3 KB are managedFields), with the decoders the manager's clients use.
//
//	go test -run '^$' -bench . -benchmem ./internal/controller

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"

	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	restclientwatch "k8s.io/client-go/rest/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

//go:embed testdata/delivered_event.json
var deliveredEventJSON []byte

func benchScheme(tb testing.TB) *runtime.Scheme {
	scheme := runtime.NewScheme()
	if err := webhooksv1alpha1.AddToScheme(scheme); err != nil {
		tb.Fatal(err)
	}
	return scheme
}

// jsonDecoder is the decoder of the manager's typed client and informers for JSON (CRDs have no
// protobuf): the codec factory without conversion, as controller-runtime builds it.
func jsonDecoder(tb testing.TB) (runtime.Decoder, runtime.SerializerInfo) {
	codecs := serializer.NewCodecFactory(benchScheme(tb))
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		tb.Fatal("no JSON serializer")
	}
	return codecs.WithoutConversion().DecoderToVersion(info.Serializer, webhooksv1alpha1.GroupVersion), info
}

func deliveredEvent(tb testing.TB) *webhooksv1alpha1.DocumentEvent {
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := json.Unmarshal(deliveredEventJSON, ev); err != nil {
		tb.Fatal(err)
	}
	return ev
}

// repeatedFrames is an endless watch stream that sends the same frame again and again.
type repeatedFrames struct {
	frame []byte
	off   int
}

func (r *repeatedFrames) Read(p []byte) (int, error) {
	n := copy(p, r.frame[r.off:])
	r.off = (r.off + n) % len(r.frame)
	return n, nil
}

func (r *repeatedFrames) Close() error { return nil }

// BenchmarkWatchEventDecode is one watch event of a delivered event, decoded the way a reflector does
// (frame, envelope, embedded object). The manager decodes each event's object once per watch event it
// gets: ADDED when it is created, then one per status write, in every watch that sees it. A
// metadata-only watch (PartialObjectMetadata, which the API server sends as protobuf even for a CRD)
// carries the same event for a fraction of the cost.
func BenchmarkWatchEventDecode(b *testing.B) {
	b.Run("DocumentEvent JSON", func(b *testing.B) {
		dec, info := jsonDecoder(b)
		frame := append(append([]byte(`{"type":"MODIFIED","object":`), deliveredEventJSON...), "}\n"...)
		benchWatchDecode(b, frame, info, dec)
	})
	b.Run("PartialObjectMetadata protobuf", func(b *testing.B) {
		info, dec := protobufMetadata(b)
		object := encodedMetadata(b)
		envelope, err := (&metav1.WatchEvent{Type: "MODIFIED", Object: runtime.RawExtension{Raw: object}}).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(envelope)))
		benchWatchDecode(b, append(frame, envelope...), info, dec)
	})
}

func benchWatchDecode(b *testing.B, frame []byte, info runtime.SerializerInfo, dec runtime.Decoder) {
	stream := &repeatedFrames{frame: frame}
	watchDecoder := restclientwatch.NewDecoder(
		streaming.NewDecoder(info.StreamSerializer.NewFrameReader(stream), info.StreamSerializer.Serializer), dec)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := watchDecoder.Decode(); err != nil {
			b.Fatal(err)
		}
	}
}

// protobufMetadata is the serializer and decoder of the metadata client, which asks for
// PartialObjectMetadata as protobuf.
func protobufMetadata(tb testing.TB) (runtime.SerializerInfo, runtime.Decoder) {
	codecs := metainternalversionscheme.Codecs
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		tb.Fatal("no protobuf serializer")
	}
	return info, codecs.WithoutConversion().DecoderToVersion(info.Serializer, metav1.SchemeGroupVersion)
}

// encodedMetadata is the delivered event's metadata as the API server sends it to the metadata client.
func encodedMetadata(tb testing.TB) []byte {
	partial := &metav1.PartialObjectMetadata{ObjectMeta: deliveredEvent(tb).ObjectMeta}
	partial.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
	var body bytes.Buffer
	if err := protobuf.NewSerializer(metainternalversionscheme.Scheme, metainternalversionscheme.Scheme).Encode(partial, &body); err != nil {
		tb.Fatal(err)
	}
	return body.Bytes()
}

// BenchmarkStatusPatchResponse is the response of the status patch that records an outcome. Patched
// through the typed client, the API server returns the whole event as JSON and the client decodes it;
// patched with a PartialObjectMetadata (the metadata client), it returns only the metadata, as
// protobuf, which is all the reconciler reads back (the resourceVersion).
func BenchmarkStatusPatchResponse(b *testing.B) {
	b.Run("typed DocumentEvent JSON", func(b *testing.B) {
		dec, _ := jsonDecoder(b)
		b.SetBytes(int64(len(deliveredEventJSON)))
		b.ReportAllocs()
		for b.Loop() {
			if err := runtime.DecodeInto(dec, deliveredEventJSON, &webhooksv1alpha1.DocumentEvent{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PartialObjectMetadata protobuf", func(b *testing.B) {
		_, dec := protobufMetadata(b)
		body := encodedMetadata(b)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := runtime.Decode(dec, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func mergeFromPatch(base, cur *webhooksv1alpha1.DocumentEventStatus) ([]byte, error) {
	return client.MergeFrom(&webhooksv1alpha1.DocumentEvent{Status: *base}).Data(&webhooksv1alpha1.DocumentEvent{Status: *cur})
}

// statusTransitions are status writes the reconciler makes: the first outcome of a new event, a failed
// attempt that waits for its retry, the retry's success, and a redelivery that reopens the event.
func statusTransitions(tb testing.TB) map[string][2]webhooksv1alpha1.DocumentEventStatus {
	delivered := deliveredEvent(tb).Status
	retrying := *delivered.DeepCopy()
	retrying.Phase, retrying.CompletionTime = webhooksv1alpha1.DocumentEventDelivering, nil
	d := &retrying.Deliveries[0]
	d.Phase, d.DeliveredAt, d.LastStatusCode = webhooksv1alpha1.DeliveryRetrying, nil, 503
	d.NextAttemptTime, d.LastError = d.LastAttemptTime.DeepCopy(), "HTTP 503 Service Unavailable"
	retrying.Conditions = retrying.Conditions[:1]
	reopened := *delivered.DeepCopy()
	reopened.Phase, reopened.CompletionTime, reopened.Deliveries = webhooksv1alpha1.DocumentEventPending, nil, nil
	reopened.LastRedeliveryRequest = "2026-12-02T00:00:00Z"
	return map[string][2]webhooksv1alpha1.DocumentEventStatus{
		"first outcome":  {{}, delivered},
		"retry waits":    {{}, retrying},
		"retry succeeds": {retrying, delivered},
		"redelivery":     {delivered, reopened},
	}
}

func TestStatusMergePatchMatchesMergeFrom(t *testing.T) {
	for name, tr := range statusTransitions(t) {
		t.Run(name, func(t *testing.T) {
			got, err := statusMergePatch(&tr[0], &tr[1])
			if err != nil {
				t.Fatal(err)
			}
			want, err := mergeFromPatch(&tr[0], &tr[1])
			if err != nil {
				t.Fatal(err)
			}
			var gotPatch, wantPatch map[string]any
			if err := json.Unmarshal(got, &gotPatch); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &wantPatch); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotPatch, wantPatch) {
				t.Errorf("patch\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestStatusMergePatchAssumptions fails when DocumentEventStatus gains a member that a merge patch
// does not replace whole (a struct or a map), which statusMergePatch would then write wrongly.
func TestStatusMergePatchAssumptions(t *testing.T) {
	status := reflect.TypeFor[webhooksv1alpha1.DocumentEventStatus]()
	for i := range status.NumField() {
		field := status.Field(i)
		switch field.Type.Kind() {
		case reflect.String, reflect.Int64, reflect.Int32, reflect.Bool, reflect.Slice:
		case reflect.Pointer:
			if field.Type != reflect.TypeFor[*metav1.MicroTime]() {
				t.Errorf("%s is a %s: a merge patch merges it member by member", field.Name, field.Type)
			}
		default:
			t.Errorf("%s is a %s: a merge patch merges it member by member", field.Name, field.Type)
		}
	}
}

// BenchmarkStatusPatchBuild builds the patch of an event's first outcome (its usual single write).
func BenchmarkStatusPatchBuild(b *testing.B) {
	tr := statusTransitions(b)["first outcome"]
	for _, build := range []struct {
		name  string
		patch func(base, cur *webhooksv1alpha1.DocumentEventStatus) ([]byte, error)
	}{{"client.MergeFrom", mergeFromPatch}, {"changed members", statusMergePatch}} {
		b.Run(build.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := build.patch(&tr[0], &tr[1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEventDeepCopy is one copy of a cached event (managedFields are stripped in the cache). Each
// reconcile makes two: the cache Get, and the base of the status patch (newEventScope).
func BenchmarkEventDeepCopy(b *testing.B) {
	ev := deliveredEvent(b)
	ev.ManagedFields = nil
	b.ReportAllocs()
	for b.Loop() {
		_ = ev.DeepCopy()
	}
}
