package proxy

// malformed are requests that must be answered 400 and never reach a
// backend.
var malformed = map[string]string{
	"cl-and-te":          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"te-and-cl":          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
	"dup-cl-same":        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"dup-cl-conflict":    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"cl-list":            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
	"cl-negative":        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
	"bad-chunk-size":     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
	"chunk-overflow":     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
	"te-unknown":         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"nul-in-value":       "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
	"cr-in-value":        "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
	"leading-space":      "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"obs-fold":           "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n",
	"space-in-name":      "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
	"space-before-colon": "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
	"two-hosts":          "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"no-host-11":         "GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
}
