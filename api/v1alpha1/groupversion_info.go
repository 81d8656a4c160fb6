// Package v1alpha1 contains the API types of the webhooks.1flow.io group: WebhookEndpoint, one receiver of
// an organization (a namespace), and DocumentEvent, one processed document to be delivered to the
// matching endpoints.
// +kubebuilder:object:generate=true
// +groupName=webhooks.1flow.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "webhooks.1flow.io", Version: "v1alpha1"}

	// SchemeBuilder is used to add go types to the GroupVersionKind scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
