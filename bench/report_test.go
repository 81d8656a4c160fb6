package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestMergeResultsKeepsOtherScenarios checks that --merge leaves the other scenarios' results byte for
// byte as they were written, replaces a scenario that was measured again, and keeps the run order.
func TestMergeResultsKeepsOtherScenarios(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latest.json")
	first := []result{
		{Scenario: scThroughput, Value: 0.9, Unit: "delivered/ceiling", Target: ">= 0.85", Met: true,
			Details: map[string]any{"machine": machine{CPUs: 2, Revision: "abc"}, "ratio": 0.9}},
		{Scenario: scChaos, Value: 3, Unit: "events lost", Details: map[string]any{"kills": 1}},
		{Scenario: scLatency, Value: 12.5, Unit: "ms (p99)", Details: map[string]any{"p99_ms": 12.5}},
	}
	if err := writeJSON(path, first); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	merged, err := mergeResults(path, []result{{Scenario: scChaos, Value: 0, Unit: "events lost", Details: map[string]any{"kills": 8}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(path, merged); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []result
	if err := json.Unmarshal(after, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Scenario != scThroughput || got[1].Scenario != scLatency || got[2].Scenario != scChaos {
		t.Fatalf("scenarios after merge: %+v", got)
	}
	if got[2].Details["kills"] != 8.0 {
		t.Errorf("chaos was not replaced: %v", got[2].Details)
	}
	// The throughput entry, machine included, is written exactly as before.
	var oldRaw, newRaw []json.RawMessage
	_ = json.Unmarshal(before, &oldRaw)
	_ = json.Unmarshal(after, &newRaw)
	if !bytes.Equal(oldRaw[0], newRaw[0]) {
		t.Errorf("throughput entry changed:\nbefore %s\nafter  %s", oldRaw[0], newRaw[0])
	}
}
