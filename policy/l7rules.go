package policy

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy/l7"
)

// compileL7 compiles the L7 part of a port rule (nil for an L4-only one).
func compileL7(pr *v1alpha1.PortRule, ref RuleRef, namespace string, opts Options, fld *field.Path) (*l7.Policy, field.ErrorList) {
	return l7.CompilePortRule(*pr, ref.String(), namespace, opts.Secrets, fld)
}
