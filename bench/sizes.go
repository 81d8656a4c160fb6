package main

import "time"

// sizes are the knobs of one mode.
type sizes struct {
	// throughputEvents are created by creators concurrent clients, with and without the operator.
	throughputEvents int
	creators         int
	// latencyRate events per second for latencyDuration, after latencyWarmup unmeasured events.
	latencyRate     int
	latencyDuration time.Duration
	latencyWarmup   int
	// isolationEvents go to isolationHealthy fast and isolationHanging never-answering endpoints, in
	// isolationRounds pairs of runs.
	isolationEvents  int
	isolationHealthy int
	isolationHanging int
	isolationRounds  int
	hangingTimeout   time.Duration
	// fanoutEvents go to fanoutEndpoints endpoints each; the baseline sends as many to one endpoint.
	fanoutEvents    int
	fanoutEndpoints int
	// memoryEvents of about memoryPayload bytes each, created by memoryCreators clients; the manager's
	// memory is read when the first of memoryCheckpoints is delivered.
	memoryEvents      int
	memoryPayload     int
	memoryCreators    int
	memoryCheckpoints []int
	// restartWatch is how long after the restarted manager is Ready the memory scenario checks that it
	// neither writes nor resends.
	restartWatch time.Duration
	// historySmall and then historyLarge finished events (Delivered, as kept for their history) are in
	// the cluster when a manager starts; historyCreators clients create them. historyTimeout bounds
	// the scenario, which mostly waits for the API server to store historyLarge events.
	historySmall    int
	historyLarge    int
	historyCreators int
	historyTimeout  time.Duration
	// tenantNamespaces namespaces with tenantEndpoints endpoints each, and one event per namespace.
	tenantNamespaces int
	tenantEndpoints  int
	// shardEvents events, half of them for each of the two shards.
	shardEvents int
	// chaos sizes the chaos scenario, which has its own time bound (stream, drain and a margin).
	chaos chaosSizes
	// scenarioTimeout bounds one scenario; running out of it is a harness failure.
	scenarioTimeout time.Duration
}

var fullSizes = sizes{
	throughputEvents:  2000,
	creators:          16,
	latencyRate:       50,
	latencyDuration:   20 * time.Second,
	latencyWarmup:     20,
	isolationEvents:   1000,
	isolationHealthy:  7,
	isolationHanging:  3,
	isolationRounds:   4,
	hangingTimeout:    10 * time.Second,
	fanoutEvents:      1000,
	fanoutEndpoints:   10,
	memoryEvents:      10000,
	memoryPayload:     2048,
	memoryCreators:    32,
	memoryCheckpoints: []int{1000, 2500, 5000, 7500, 10000},
	restartWatch:      30 * time.Second,
	historySmall:      1000,
	historyLarge:      50000,
	historyCreators:   32,
	historyTimeout:    20 * time.Minute,
	tenantNamespaces:  200,
	tenantEndpoints:   10,
	shardEvents:       2000,
	chaos:             fullChaos,
	scenarioTimeout:   5 * time.Minute,
}

var quickSizes = sizes{
	throughputEvents:  300,
	creators:          16,
	latencyRate:       50,
	latencyDuration:   5 * time.Second,
	latencyWarmup:     10,
	isolationEvents:   100,
	isolationHealthy:  7,
	isolationHanging:  3,
	isolationRounds:   2,
	hangingTimeout:    10 * time.Second,
	fanoutEvents:      150,
	fanoutEndpoints:   10,
	memoryEvents:      2000,
	memoryPayload:     2048,
	memoryCreators:    32,
	memoryCheckpoints: []int{1000, 2000},
	restartWatch:      15 * time.Second,
	historySmall:      500,
	historyLarge:      5000,
	historyCreators:   32,
	historyTimeout:    3 * time.Minute,
	tenantNamespaces:  50,
	tenantEndpoints:   10,
	shardEvents:       400,
	chaos:             quickChaos,
	scenarioTimeout:   110 * time.Second,
}

// Targets from the issue, as printed and written to latest.json.
const (
	throughputRatioTarget = 0.85
	latencyP99TargetMs    = 20.0
	isolationRatioTarget  = 0.9
	fanoutRatioTarget     = 5.0
	writesTarget          = 1.05
	cpuTargetMs           = 0.8
	memoryTargetMiB       = 100.0
	historyRatioTarget    = 1.15
	restartTargetSeconds  = 5.0
	tenantsTargetMiB      = 150.0
)

// Scenario names, and detail keys that several scenarios share.
const (
	scThroughput = "throughput"
	scWrites     = "writes"
	scLatency    = "latency"
	scIsolation  = "isolation"
	scFanout     = "fanout"
	scMemory     = "memory"
	scHistory    = "history"
	scRestart    = "restart"
	scCPU        = "cpu"
	scTenants    = "tenants"
	scShards     = "shards"
	scChaos      = "chaos"
	scTracing    = "tracing"

	keyEvents           = "events"
	keyEndpoints        = "endpoints"
	keyMeasured         = "measured"
	keyReceiverRequests = "receiver_requests"
)

var targets = map[string]string{
	scThroughput: ">= 0.85 (delivered/ceiling), connections <= maxInFlight (16)",
	scLatency:    "p99 <= 20 ms",
	scIsolation:  ">= 0.9",
	scFanout:     ">= 5",
	scWrites:     "<= 1.05",
	scCPU:        "<= 0.8 ms",
	scMemory:     "<= 100 MiB, and no API write or resent request after a restart",
	scHistory:    "<= 1.15",
	scRestart:    "<= 5 s",
	scTenants:    "<= 150 MiB, every delivery made",
	scShards:     "0 foreign objects cached, every event delivered exactly once",
	scTracing:    "reported: manager CPU per event with spans exported over OTLP, against tracing off",
	scChaos:      "0 lost, 0 resent or undone after Delivered, 1 X-Webhook-Id per document and endpoint",
}
