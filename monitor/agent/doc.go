// Package agent is both ends of sluice-agent: the sampling and serving
// that run on a backend host, and the Client the gateway's monitor uses to
// read them.
//
// # The contract
//
// An agent answers two questions about its backend, in two protocols:
//
//   - GET /load returns a Load document (load.go): when the sample was
//     taken and over what window, host CPU utilisation, the CPU of each
//     configured target (processes by name, PIDs, cgroup v2 directories),
//     load averages, memory in use, optionally the origin's own in-flight
//     count, and the agent's verdict: state up with a weight, drain, or
//     down with the reason. Fractions are 0..1, times are seconds, memory
//     is bytes, CPU of a target is also given in cores.
//   - A TCP port speaks HAProxy's agent-check protocol: on each connection
//     the agent writes one line (AgentReply: "up 75%", "drain",
//     "down#reason") and closes, so HAProxy can use the agent as well as
//     Sluice can.
//
// Both carry the same verdict, from the same sample: a backend never looks
// loaded to HAProxy and idle to Sluice.
//
// # Why sampling is split in two
//
// CPU utilisation is a rate: it needs two readings of cumulative counters.
// gopsutil's cpu.Percent(interval) takes both and sleeps in between; the
// agent instead reads the counters once per interval and compares each
// reading with the previous one (delta.go, pure functions on made-up
// counters in the tests). One sample is then a handful of reads of small
// files under /proc and /sys, which is what keeps the agent under 1% of a
// core at one sample a second (docs/benchmarks.md), and every figure
// covers exactly the window between two samples, with nothing missed.
// Processes searched by name are the exception: finding them means
// reading the whole process table, so that happens at start, every
// Config.Rescan (10 s) to find new workers, when a tracked one exits, and
// at every sample while none is found (the agent is down then).
//
// The Agent (agent.go) owns the only goroutine that samples and publishes
// each judged sample whole through an atomic pointer; the HTTP handler and
// the agent-check server only read it. The Probe interface is the seam:
// tests give the Agent a probe that reports whatever CPU they want, which
// is how the HAProxy test drives a real HAProxy without burning a core.
//
// # The verdict (Policy, pure)
//
// The weight is 100% up to a target CPU (0.85, the same target at which
// the gateway pulls a backend's concurrency limit down), then falls
// linearly to a floor (10%) at full CPU. Linear because a backend past its
// target is still useful, only less so the busier it is; a floor above 0
// because HAProxy reads 0% as drain. The CPU used is the highest of the
// host's and every target's, a target's being relative to its cgroup
// quota when it has one: whichever is nearest its limit decides. With a
// drain threshold set, CPU at or above it says drain, with 5 points of
// hysteresis so a CPU hovering at the threshold does not flap. A
// configured target that is missing says down: the origin the agent was
// told to watch is not running, whatever the host's CPU says. A missing
// target is never an error of the agent itself: it keeps running and
// reports, and a target that comes back (a process of that name starting
// again, a cgroup created again) turns it up again; a PID does not come
// back.
//
// HAProxy keeps any state the agent set until the agent sets another, and
// only "ready" undoes the agent's drain. But "ready" also undoes a drain
// or maintenance that an operator set on HAProxy's CLI. So up replies
// carry "ready" only while it may be needed: for ReadyHold (1 min) after
// the agent starts and after the last sample that was not up.
//
// # Reading it from the gateway
//
// Client.Fetch is strict on purpose: unknown fields, a wrong version, a
// second JSON value or a figure out of range are errors. An agent URL that
// points at some other JSON endpoint must fail loudly; decoded leniently
// it would read as a backend at 0% CPU, the most attractive backend there
// is. Adding a field to Load therefore means a new Version.
//
// Staleness is the monitor's call, but the data to decide it is here:
// Load.Age gives the sample's age on the gateway's own clock (the age the
// agent reported when serving it, plus the time since it arrived), so
// clock skew between hosts does not matter. An agent whose sampling fails
// keeps serving its last sample, which then ages: a stuck agent looks
// stale, not healthy.
package agent
