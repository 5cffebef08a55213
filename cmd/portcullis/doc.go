// Command portcullis is the Portcullis CLI. It reads policy files the way
// the operator would admit them and explains verdicts without a cluster:
//
//	portcullis policy trace    -f FILE_OR_DIR ... --src ... --dst ... --dport PORT[/PROTO]
//	portcullis policy validate -f FILE_OR_DIR ...
//	portcullis policy convert  -f FILE_OR_DIR ...
//
// Files are read by policy/loader with the CRD schema and CEL rules of
// apis/policy/validation, then compiled by the policy engine; every
// problem, from either, is reported as
// `FILE: document N (Kind ns/name): field.path: message`.
//
// # Exit status
//
//   - 0: the command ran; for trace, whatever the verdict.
//   - 1: bad input (a file that does not load, validate or compile), or
//     a failure writing the output. Nothing is written to standard output.
//   - 2: bad command line (unknown flag, missing or conflicting flags, a
//     flag value that does not parse); the usage is printed on standard
//     error.
//
// # Output
//
// trace prints a human-readable explanation (-o text, the default) whose
// last line is exactly `Final verdict: ALLOWED`, `Final verdict: DENIED` or
// `Final verdict: AUDITED`, or one indented JSON object (-o json, see
// traceJSON). Both formats are stable: tests compare them with golden
// files in testdata/.
package main
