package admin

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sluiceproxy/sluice/proxy"
)

// Events is GET /api/v1/events: the gateway's event ring, oldest first.
// ?since=N returns only the events after sequence number N, so that a
// page polling it receives each event once.
type Events struct {
	Events []proxy.Event `json:"events"`
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since: want a sequence number, got %q", v))
			return
		}
		since = n
	}
	out := Events{Events: []proxy.Event{}}
	for _, e := range s.gw.Events() {
		if e.Seq > since {
			out.Events = append(out.Events, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
