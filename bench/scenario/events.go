package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"time"
)

// PeerEvent is one of the monitor's events as Sluice logs it (a JSON line
// with an "event" field: "activated", "released", "ejected", ...), or one
// of its standby lines without one ("standby taking requests, in slow
// start"), with when the line appeared in the log.
type PeerEvent struct {
	// At is when the line was first seen, from the start of the run. The
	// log is read every logPollEvery, so the line was written at most
	// that much earlier; its own timestamp has whole seconds only.
	At      time.Duration `json:"at_ns"`
	Event   string        `json:"event,omitempty"`
	Message string        `json:"message"`
	Backend string        `json:"backend,omitempty"`
	Reason  string        `json:"reason,omitempty"`
}

// logPollEvery is how often followLog reads what the peer appended: the
// resolution of PeerEvent.At.
const logPollEvery = 100 * time.Millisecond

// followLog reads the JSON lines appended to the log at path every
// logPollEvery until ctx ends, then once more, and returns the events
// among them. Lines that are not JSON (another peer's log) are skipped.
func followLog(ctx context.Context, path string, start time.Time) []PeerEvent {
	var lf logFollower
	t := time.NewTicker(logPollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lf.read(path, time.Since(start))
			return lf.events
		case <-t.C:
			lf.read(path, time.Since(start))
		}
	}
}

// logFollower is the state of followLog: how far the log has been read,
// the line still being written, and the events so far.
type logFollower struct {
	off     int64
	partial []byte
	events  []PeerEvent
}

// read takes in what was appended to the log since the last call, with at
// as the time of every complete line in it. A log that cannot be read yet
// is tried again at the next call.
func (l *logFollower) read(path string, at time.Duration) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return
	}
	b, _ := io.ReadAll(f) // a short read is read again from the new offset
	l.off += int64(len(b))
	data := append(l.partial, b...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		l.line(data[:i], at)
		data = data[i+1:]
	}
	l.partial = bytes.Clone(data)
}

func (l *logFollower) line(b []byte, at time.Duration) {
	var ln struct {
		Event   string `json:"event"`
		Message string `json:"message"`
		Backend string `json:"backend"`
		Reason  string `json:"reason"`
	}
	if json.Unmarshal(b, &ln) != nil {
		return
	}
	if ln.Event == "" && !strings.HasPrefix(ln.Message, "standby") {
		return
	}
	l.events = append(l.events, PeerEvent{At: at, Event: ln.Event, Message: ln.Message, Backend: ln.Backend, Reason: ln.Reason})
}
