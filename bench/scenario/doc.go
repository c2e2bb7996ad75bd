// Package scenario runs the demo and the comparison scenarios: Sluice,
// HAProxy (tuned and untuned), nginx and no proxy at all in front of the
// same simulated origin, under the same open-loop load, one after another in
// one invocation, printed side by side.
//
// Every run gets a fresh origin. The origin keeps working on requests whose
// clients gave up, so after an overloaded run it can owe minutes of work;
// a shared origin would make the order of the peers matter.
//
// Peers are child processes in their own process group with
// PR_SET_PDEATHSIG, so they die with the benchmark even when it is killed;
// their config files and logs live in one temporary directory. A peer whose
// program is missing is skipped with a line saying so. Tables are computed
// from loadgen reports; floors are the pass/fail criteria for Sluice
// (overload goodput, latency of admitted requests, priority, fairness,
// and backend quality of service).
//
// The qos scenario (qos.go) puts Sluice and HAProxy leastconn in front of
// several origins, one of which is made to fail, hang or run slow through
// its admin endpoint while the load runs. Its floors count requests by
// the time they were sent (loadgen's Config.After), and check that the
// run did what it was for before judging it: the change was made, the
// long polls were on the origin. A run that did not is not measured, and
// fails. Its standby part (qosstandby.go) overloads one backend with a
// standby beside it, and reads when the standby took load from the
// standby origin's counters, sampled during the run, and the activation
// and release from Sluice's log, followed during the run (events.go).
//
// Scenario code is plumbing around loadgen and origin, so its tests are
// light: the generated configs (checked by haproxy -c and nginx -t when
// installed, which CI makes sure of), the tables and floors on synthetic
// reports, a quick demo against the built binary, held to a goodput
// floor that a limiter frozen at its starting value fails, and a short
// qos-standby run against it.
package scenario
