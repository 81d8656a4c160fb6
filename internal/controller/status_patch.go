package controller

import (
	"encoding/json"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// statusMergePatch is the JSON merge patch {"status":{...}} that turns base into cur: each changed
// member with its new value, and null for one that became empty (omitempty leaves it out of cur).
// DocumentEventStatus has only scalars, lists and a time, which a merge patch replaces whole, so this
// is what client.MergeFrom computes, without encoding both statuses and decoding them again to diff
// them (BenchmarkStatusPatchBuild: a third of the time and a fifth of the allocations).
func statusMergePatch(base, cur *webhooksv1alpha1.DocumentEventStatus) ([]byte, error) {
	changed := map[string]any{}
	was, now := reflect.ValueOf(base).Elem(), reflect.ValueOf(cur).Elem()
	for i := range now.NumField() {
		before, after := was.Field(i), now.Field(i)
		if equality.Semantic.DeepEqual(before.Interface(), after.Interface()) {
			continue
		}
		name, _, _ := strings.Cut(now.Type().Field(i).Tag.Get("json"), ",")
		if after.IsZero() || (after.Kind() == reflect.Slice && after.Len() == 0) {
			changed[name] = nil
		} else {
			changed[name] = after.Interface()
		}
	}
	return json.Marshal(map[string]any{"status": changed})
}
