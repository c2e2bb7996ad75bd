package proxy

import "sync/atomic"

// retryBudget bounds the retries of a service to a share of its requests,
// as Finagle's and Envoy's retry budgets do: every request deposits one
// token, a retry that would load another backend withdraws retryCost,
// so at most 1/retryCost of the requests (10%) are sent twice. Without
// it, an overloaded service's failures (503s, resets) would each be sent
// again and add their load to the backends that still stand. A retry of a
// request that never reached a backend (connection refused, pool full)
// costs nothing: it adds no load anywhere.
//
// The balance starts with retryInitial tokens so that the first failures
// of a fresh gateway can be retried, and is capped at retryMax so that a
// long quiet spell cannot save up for a storm.
type retryBudget struct {
	tokens atomic.Int64
}

const (
	retryCost    = 10   // tokens per retry: 10% of requests
	retryInitial = 100  // 10 retries at start
	retryMax     = 1000 // at most 100 retries saved up
)

func newRetryBudget() *retryBudget {
	b := &retryBudget{}
	b.tokens.Store(retryInitial)
	return b
}

// deposit is called once per request.
func (b *retryBudget) deposit() {
	if b.tokens.Load() < retryMax {
		b.tokens.Add(1)
	}
}

// withdraw takes the tokens of one retry; false when the budget is spent.
func (b *retryBudget) withdraw() bool {
	for {
		t := b.tokens.Load()
		if t < retryCost {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-retryCost) {
			return true
		}
	}
}
