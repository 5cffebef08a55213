// Package tls tests TLS through the real datapath (root): a pod's
// connections to "external" hosts (localcluster.AddHost) redirected by the
// BPF programs to the agent's proxy, which judges server names without
// decrypting and intercepts with certificates the operator copied into the
// secrets namespace. Certificates are made with openssl, as the docs do;
// the clients are curl and openssl s_client in the pod.
package tls
