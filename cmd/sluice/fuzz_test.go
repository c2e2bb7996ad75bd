package main

import "testing"

// FuzzLoadConfig feeds arbitrary bytes to the file loader and the
// validation behind it: whatever the input, they return a configuration or
// an error naming the file, and never panic.
func FuzzLoadConfig(f *testing.F) {
	// Small seeds only: with the multi-kilobyte configs/example.yaml as a
	// seed, the fuzzing engine stalls (0 execs/s) before it gets going.
	for _, s := range []string{
		"",
		"listen: 127.0.0.1:1\nservices:\n  - name: a\n    backends: [http://127.0.0.1:1]\n",
		"services:\n  - name: a\n    bakends: []\n",
		"listen: 127.0.0.1:8080\nservices:\n  - {name: a, backends: [http://127.0.0.1:1], queue: {limit: static:4, class_timeout: {low: 1s}}}\n" +
			"routes:\n  - {host: a.example, path_prefix: /v1/, headers: {X-A: b}, service: a, priority: high, timeout: 1s}\n" +
			"timeouts: {idle: 1s}\nlog: {access_log: false}\npool: {max_conns: 4}\nqueue: {tenant_weights: {t: 2}}\n",
		"timeouts: {idle: soon}\n",
		"queue: {class_timeout: {urgent: 1s}, queue_discipline: lifo}\n",
		"routes:\n  - headers: {X: [1]}\n",
		"a: &x [*x]\n",
		"- a\n---\n- b\n",
		"services: [{name: a, backends: ['http://[::1']}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := parseConfig("fuzz.yaml", data)
		if err != nil {
			if cf != nil {
				t.Fatalf("error %v with a configuration", err)
			}
			if msg := err.Error(); len(msg) < len("fuzz.yaml: ") || msg[:len("fuzz.yaml: ")] != "fuzz.yaml: " {
				t.Fatalf("error %q does not name the file", msg)
			}
			return
		}
		if _, err := complete(cf, cf.cfg); err != nil && err.Error() == "" {
			t.Fatal("empty validation error")
		}
	})
}
