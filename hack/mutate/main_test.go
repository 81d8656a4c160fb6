package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestApplyReplacesASnippetThatOccursExactlyOnce(t *testing.T) {
	m := mutant{name: "m", file: "x.go", original: "a < b", replacement: "a <= b"}
	got, err := apply([]byte("if a < b {\n}\n"), m)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "if a <= b {\n}\n" {
		t.Errorf("got %q", got)
	}
}

func TestApplyRefusesAMissingOrRepeatedSnippetNamingTheMutantAndFile(t *testing.T) {
	m := mutant{name: "lane-bound-dropped", file: "internal/engine/engine.go", original: "a < b", replacement: "true"}
	for src, want := range map[string]string{
		"if a <= b {}":             "no longer in internal/engine/engine.go",
		"if a < b {}; if a < b {}": "occurs 2 times in internal/engine/engine.go",
	} {
		_, err := apply([]byte(src), m)
		if err == nil || !strings.Contains(err.Error(), "lane-bound-dropped") || !strings.Contains(err.Error(), want) {
			t.Errorf("apply to %q: got %v, want an error naming the mutant and saying %q", src, err, want)
		}
	}
	if _, err := apply([]byte("a < b"), mutant{name: "same", original: "a < b", replacement: "a < b"}); err == nil {
		t.Error("a replacement equal to its original was accepted")
	}
}

func TestApplyAllReportsEveryStaleEntry(t *testing.T) {
	files := map[string]string{"a.go": "x := 1", "b.go": "y := 2"}
	read := func(name string) ([]byte, error) { return []byte(files[name]), nil }
	_, err := applyAll([]mutant{
		{name: "first", file: "a.go", original: "x := 0", replacement: "x := 2"},
		{name: "fine", file: "b.go", original: "y := 2", replacement: "y := 3"},
		{name: "second", file: "b.go", original: "z", replacement: "w"},
	}, read)
	if err == nil || !strings.Contains(err.Error(), "first") || !strings.Contains(err.Error(), "second") || strings.Contains(err.Error(), "fine") {
		t.Errorf("got %v, want the two stale entries named", err)
	}
}

func TestEveryListedMutantIsNamedOnceAndChangesSomething(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range mutants {
		if seen[m.name] {
			t.Errorf("two mutants are named %s", m.name)
		}
		seen[m.name] = true
		if m.file == "" || m.original == "" || m.why == "" || m.original == m.replacement {
			t.Errorf("mutant %s: file, original and why are required, and the replacement must differ", m.name)
		}
	}
}

func TestOverlayJSONReplacesTheRealFile(t *testing.T) {
	var overlay struct{ Replace map[string]string }
	if err := json.Unmarshal(overlayJSON("/repo/internal/engine/engine.go", "/tmp/m/engine.go"), &overlay); err != nil {
		t.Fatal(err)
	}
	if len(overlay.Replace) != 1 || overlay.Replace["/repo/internal/engine/engine.go"] != "/tmp/m/engine.go" {
		t.Errorf("got %v", overlay.Replace)
	}
}

func TestChooseRefusesAnUnknownName(t *testing.T) {
	all := []mutant{{name: "a"}, {name: "b"}}
	if got, err := choose(all, "b, a"); err != nil || len(got) != 2 || got[0].name != "b" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := choose(all, "a,c"); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("got %v, want an error naming c", err)
	}
}

// Lines as go test -json writes them (Go 1.26), trimmed to the fields the runner reads.
const (
	subtestFailed = `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestSimulation"}
{"Action":"run","Package":"p","Test":"TestSimulation/seed=1"}
{"Action":"pass","Package":"p","Test":"TestSimulation/seed=1"}
{"Action":"run","Package":"p","Test":"TestSimulation/seed=2"}
{"Action":"output","Package":"p","Test":"TestSimulation/seed=2","Output":"    sim_test.go:247: sent again after Delivered\n"}
{"Action":"fail","Package":"p","Test":"TestSimulation/seed=2"}
{"Action":"run","Package":"p","Test":"TestSimulation/seed=3"}
{"Action":"fail","Package":"p","Test":"TestSimulation/seed=3"}
{"Action":"fail","Package":"p","Test":"TestSimulation"}
{"Action":"fail","Package":"p"}
`
	buildFailed = `{"ImportPath":"p [p.test]","Action":"build-output","Output":"# p [p.test]\n"}
{"ImportPath":"p [p.test]","Action":"build-output","Output":"./engine.go:2:23: undefined: x\n"}
{"ImportPath":"p [p.test]","Action":"build-fail"}
{"Action":"start","Package":"p"}
{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}
{"Action":"fail","Package":"p","FailedBuild":"p [p.test]"}
`
	timedOut = `{"Action":"run","Package":"p","Test":"TestStop"}
{"Action":"pass","Package":"p","Test":"TestStop"}
{"Action":"run","Package":"p","Test":"TestF"}
{"Action":"run","Package":"p","Test":"TestF/sub"}
{"Action":"output","Package":"p","Test":"TestF/sub","Output":"panic: test timed out after 1s\n"}
{"Action":"fail","Package":"p"}
`
)

func TestKillerIsTheDeepestFailingTest(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"subtests":  {subtestFailed, "TestSimulation/seed=2 (+1 more)"},
		"timed out": {timedOut, "TestF/sub (timed out)"},
		"one test": {`{"Action":"run","Package":"p","Test":"TestCircuit"}
{"Action":"fail","Package":"p","Test":"TestCircuit"}
{"Action":"fail","Package":"p"}`, "TestCircuit"},
		"passed": {`{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p"}`, ""},
	} {
		rep, err := parseTestJSON(strings.NewReader(tc.json))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rep.buildFailed {
			t.Errorf("%s: read as a build failure", name)
		}
		if got := rep.killer(); got != tc.want {
			t.Errorf("%s: killer %q, want %q", name, got, tc.want)
		}
	}
}

func TestABuildFailureIsNotAKill(t *testing.T) {
	rep, err := parseTestJSON(strings.NewReader(buildFailed))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.buildFailed || !strings.Contains(rep.buildOutput, "undefined: x") {
		t.Errorf("got %+v, want a build failure with the compiler's message", rep)
	}
}
