package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// maxRate bounds a single step so a typo ("2e9") fails at parse time rather
// than as an allocation of billions of arrival records.
const maxRate = 10_000_000

// ParseSchedule parses a rate schedule: comma-separated steps, each
// "RATE[:DURATION]" for a constant rate or "FROM-TO:DURATION" for a linear
// ramp, rates in requests per second. "200:10s,600:20s,200:10s" is a step up
// and back down; "0-1000:30s" ramps up; a single "600" takes its length from
// Config.Duration. Only a lone step may omit its duration.
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("rate schedule: empty")
	}
	parts := strings.Split(s, ",")
	sch := make(Schedule, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		rates, durStr, hasDur := strings.Cut(p, ":")
		var st Step
		if hasDur {
			d, err := time.ParseDuration(strings.TrimSpace(durStr))
			if err != nil {
				return nil, fmt.Errorf("rate schedule: step %q: bad duration: %v", p, err)
			}
			if d <= 0 {
				return nil, fmt.Errorf("rate schedule: step %q: duration must be positive", p)
			}
			st.Dur = d
		} else if len(parts) > 1 {
			return nil, fmt.Errorf("rate schedule: step %q needs a duration (RATE:DURATION) when there are several steps", p)
		}
		// A leading '-' would be a negative rate, not a ramp separator.
		from, to, isRamp := strings.Cut(rates, "-")
		if isRamp && strings.TrimSpace(from) == "" {
			return nil, fmt.Errorf("rate schedule: step %q: negative rate", p)
		}
		var err error
		if st.From, err = parseRate(from); err != nil {
			return nil, fmt.Errorf("rate schedule: step %q: %v", p, err)
		}
		st.To = st.From
		if isRamp {
			if !hasDur {
				return nil, fmt.Errorf("rate schedule: ramp %q needs a duration", p)
			}
			if st.To, err = parseRate(to); err != nil {
				return nil, fmt.Errorf("rate schedule: step %q: %v", p, err)
			}
		}
		sch = append(sch, st)
	}
	return sch, nil
}

func parseRate(s string) (float64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/s")
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad rate %q", s)
	}
	if math.IsNaN(r) || r < 0 || r > maxRate {
		return 0, fmt.Errorf("rate %q out of range [0, %d]", s, maxRate)
	}
	return r, nil
}

// String formats the schedule in the syntax ParseSchedule accepts.
func (s Schedule) String() string {
	var b strings.Builder
	for i, st := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(st.From, 'g', -1, 64))
		if st.To != st.From {
			b.WriteByte('-')
			b.WriteString(strconv.FormatFloat(st.To, 'g', -1, 64))
		}
		if st.Dur > 0 {
			b.WriteByte(':')
			b.WriteString(st.Dur.String())
		}
	}
	return b.String()
}

// Total is the schedule's length.
func (s Schedule) Total() time.Duration {
	var d time.Duration
	for _, st := range s {
		d += st.Dur
	}
	return d
}

// Expected is the mean number of arrivals the schedule asks for.
func (s Schedule) Expected() float64 {
	var n float64
	for _, st := range s {
		n += (st.From + st.To) / 2 * st.Dur.Seconds()
	}
	return n
}

// Peak is the highest rate anywhere in the schedule.
func (s Schedule) Peak() float64 {
	var p float64
	for _, st := range s {
		p = max(p, st.From, st.To)
	}
	return p
}

// arrivals yields the scheduled send times (nanoseconds from the start of the
// run) of a schedule, in order. It is a plain iterator rather than a
// precomputed slice so a long run at a high rate costs no memory up front.
//
// Constant spacing places the k-th arrival of a step exactly where the
// integral of the rate reaches k, so rounding never accumulates into a rate
// error; Poisson arrivals are drawn by thinning a homogeneous process at the
// step's peak rate, which is exact for ramps too.
type arrivals struct {
	sch     Schedule
	poisson bool
	rng     *rand.Rand

	step     int     // current step
	stepBase float64 // start of the current step, ns
	k        float64 // constant mode: index of the next arrival within the step
	t        float64 // poisson mode: time of the last candidate within the step, ns
}

func newArrivals(sch Schedule, poisson bool, rng *rand.Rand) *arrivals {
	return &arrivals{sch: sch, poisson: poisson, rng: rng}
}

// next returns the next arrival time in ns, or false when the schedule is over.
func (a *arrivals) next() (int64, bool) {
	for a.step < len(a.sch) {
		st := a.sch[a.step]
		dur := float64(st.Dur)
		var off float64
		ok := false
		if a.poisson {
			off, ok = a.nextPoisson(st, dur)
		} else {
			off, ok = a.nextConstant(st, dur)
		}
		if ok {
			return int64(a.stepBase + off), true
		}
		a.step++
		a.stepBase += dur
		a.k, a.t = 0, 0
	}
	return 0, false
}

func (a *arrivals) nextConstant(st Step, dur float64) (float64, bool) {
	k := a.k
	var off float64
	if st.From == st.To {
		if st.From <= 0 {
			return 0, false
		}
		off = k / st.From * 1e9
	} else {
		// N(t) = From*t + (To-From)*t²/(2D) with t in seconds; solve N(t) = k.
		D := dur / 1e9
		slope := (st.To - st.From) / D
		disc := st.From*st.From + 2*slope*k
		if disc < 0 {
			return 0, false // a falling ramp's integral never reaches k
		}
		off = (-st.From + math.Sqrt(disc)) / slope * 1e9
	}
	if off >= dur || math.IsNaN(off) {
		return 0, false
	}
	a.k++
	return off, true
}

func (a *arrivals) nextPoisson(st Step, dur float64) (float64, bool) {
	peak := max(st.From, st.To)
	if peak <= 0 {
		return 0, false
	}
	for {
		a.t += a.rng.ExpFloat64() / peak * 1e9
		if a.t >= dur {
			return 0, false
		}
		rate := st.From + (st.To-st.From)*a.t/dur
		if st.From == st.To || a.rng.Float64()*peak < rate {
			return a.t, true
		}
	}
}
