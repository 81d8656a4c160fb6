// Package v1alpha1 contains the API types of the webhooks.1flow.io group: WebhookEndpoint, one receiver of
// an organization (a namespace), and DocumentEvent, one processed document to be delivered to the
// matching endpoints.
// +kubebuilder:object:generate=true
// +groupName=webhooks.1flow.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "webhooks.1flow.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this group-version.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&WebhookEndpoint{}, &WebhookEndpointList{},
		&DocumentEvent{}, &DocumentEventList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
