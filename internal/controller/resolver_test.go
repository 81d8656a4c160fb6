package controller

import (
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

func TestReadinessChainSpec(t *testing.T) {
	strict, err := delivery.NewEgressPolicy(nil, nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		url          string
		suspend      bool
		requireHTTPS bool
		egress       *delivery.EgressPolicy
		want         string
	}{
		{name: "https", url: "https://hooks.example.com/x", want: webhooksv1alpha1.ReadyReason},
		{name: "http allowed by default", url: "http://hooks.example.com/x", want: webhooksv1alpha1.ReadyReason},
		{name: "http refused with --require-https", url: "http://hooks.example.com/x", requireHTTPS: true,
			want: webhooksv1alpha1.InsecureURLReason},
		{name: "https with --require-https", url: "https://hooks.example.com/x", requireHTTPS: true,
			want: webhooksv1alpha1.ReadyReason},
		{name: "relative", url: "/x", want: webhooksv1alpha1.InvalidURLReason},
		{name: "metadata address literal", url: "http://169.254.169.254/latest", egress: strict,
			want: webhooksv1alpha1.DestinationBlockedReason},
		{name: "private literal with --block-private-networks", url: "https://10.1.2.3/x", egress: strict,
			want: webhooksv1alpha1.DestinationBlockedReason},
		{name: "IPv6 loopback literal", url: "http://[::1]:8080/x", egress: strict,
			want: webhooksv1alpha1.DestinationBlockedReason},
		{name: "host names are checked at dial time", url: "http://metadata.internal/x", egress: strict,
			want: webhooksv1alpha1.ReadyReason},
		{name: "suspended", url: "https://hooks.example.com/x", suspend: true, want: webhooksv1alpha1.SuspendedReason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := &webhooksv1alpha1.WebhookEndpoint{Spec: webhooksv1alpha1.WebhookEndpointSpec{URL: tt.url, Suspend: tt.suspend}}
			in := &readinessInput{ep: ep, requireHTTPS: tt.requireHTTPS, egress: tt.egress}
			got := in.evaluate()
			if got.Reason != tt.want || got.Ready != (tt.want == webhooksv1alpha1.ReadyReason) {
				t.Fatalf("readiness of %q = %+v, want reason %s", tt.url, got, tt.want)
			}
		})
	}
}

// A block recorded in the Ready condition survives a restart only while the new process's egress policy
// still refuses the address: a manager restarted with --allowed-cidrs covering it delivers at once.
func TestARecordedBlockIsDroppedWhenThePolicyNowAllowsTheAddress(t *testing.T) {
	defaults, err := delivery.NewEgressPolicy(nil, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	loopbackAllowed, err := delivery.NewEgressPolicy(nil, []string{"127.0.0.0/8"}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	blocked := defaults.Check(netip.MustParseAddr("127.0.0.1"))
	if blocked == nil {
		t.Fatal("loopback must be blocked by default")
	}
	for _, tc := range []struct {
		name        string
		egress      *delivery.EgressPolicy
		message     string
		wantBlocked bool
	}{
		{name: "same policy", egress: defaults, message: blocked.Error(), wantBlocked: true},
		{name: "address now allowed", egress: loopbackAllowed, message: blocked.Error()},
		{name: "dial error around the block", egress: loopbackAllowed,
			message: "connection error: dial tcp 127.0.0.1:8080: " + blocked.Error()},
		{name: "no address to check", egress: loopbackAllowed, message: "destination blocked", wantBlocked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := &webhooksv1alpha1.WebhookEndpoint{
				ObjectMeta: metav1.ObjectMeta{Generation: 2},
				Spec:       webhooksv1alpha1.WebhookEndpointSpec{URL: "http://receiver.local:8080/hook"},
			}
			ep.Status.Conditions = []metav1.Condition{{Type: webhooksv1alpha1.ReadyCondition, Status: metav1.ConditionFalse,
				Reason: webhooksv1alpha1.DestinationBlockedReason, Message: tc.message, ObservedGeneration: 2}}
			got := engineEndpoint(&readinessInput{ep: ep, egress: tc.egress}).DestinationBlocked != ""
			if got != tc.wantBlocked {
				t.Fatalf("blocked = %v, want %v", got, tc.wantBlocked)
			}
		})
	}
}
