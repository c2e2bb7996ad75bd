// Package testcert makes certificate authorities and certificates for
// tests: ECDSA P-256 keys, generated in memory on each run, so that no key
// is ever committed and none expires under the test suite (each is valid
// from an hour before it is made to a day after).
//
// It is shaped for the tests that use it: the proxy's TLS listener and
// HTTPS backends, the pool's verification, and the end-to-end test of the
// command. A CA signs leaves for the names a test needs (DNS names, IP
// addresses, "*." wildcards); a leaf comes as PEM, as a tls.Certificate,
// or written to files for what reads certificates from disk (the config,
// a reload). Serial numbers come from one counter, so that certificates
// made in one run never collide. It lives under internal/ because only
// this module's tests may use it: nothing in production code imports it.
package testcert
