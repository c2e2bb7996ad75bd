// Package bench is Sluice's proving ground. Production code never imports
// it. It holds three parts that are meant to be used together:
//
//   - loadgen: an open- and closed-loop HTTP load generator that reports
//     goodput (2xx within an SLO), success ratio, latency percentiles of
//     successes, refusals by X-Sluice-Shed reason and client-side errors.
//   - origin: a simulated origin with finite capacity. Its requests share N
//     workers by processor sharing, so latency climbs under overload the
//     way a CPU-bound server's does, and it keeps working on requests whose
//     clients gave up. Capacity and failures change at run time.
//   - scenario: the demo and the comparisons, which put Sluice, HAProxy,
//     nginx and no proxy at all in front of the same origin under the same
//     load, one run each, and print them side by side with Sluice's floors.
//
// The machines these run on are shared and noisy; everything binds to
// 127.0.0.1, every run is bounded in rate and duration, and the figures
// worth quoting are ratios between peers measured in one invocation.
package bench
