package operator

import "portcullis.dev/portcullis/policy"

// compileOptions validate without reading secrets: header-match secret
// values are the agents' business (they read the copies in the secrets
// namespace); whether a reference may be used is ResolvedRefs.
var compileOptions = policy.Options{Secrets: placeholderSecrets{}}

type placeholderSecrets struct{}

func (placeholderSecrets) Resolve(_, _ string) (string, error) { return "<secret>", nil }
