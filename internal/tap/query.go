package tap

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Filter selects the requests a tap reports; a zero field matches everything.
type Filter struct {
	// PathPrefix is a plain string prefix of the request's path.
	PathPrefix string
	// Method is matched without regard to case (GET, POST, ...).
	Method string
	// Authority is the request's host:port (or host, which then matches any port).
	Authority string
	// Direction is Inbound or Outbound.
	Direction string
}

// Match reports whether a request with these fields passes the filter.
func (f Filter) Match(direction, method, authority, path string) bool {
	if f.Direction != "" && f.Direction != direction {
		return false
	}
	if f.Method != "" && !strings.EqualFold(f.Method, method) {
		return false
	}
	if f.PathPrefix != "" && !strings.HasPrefix(path, f.PathPrefix) {
		return false
	}
	if f.Authority != "" && f.Authority != authority {
		host, _, ok := strings.Cut(authority, ":")
		if !ok || strings.Contains(f.Authority, ":") || host != f.Authority {
			return false
		}
	}
	return true
}

// MatchEvent is Match on an event's fields.
func (f Filter) MatchEvent(ev *Event) bool {
	return f.Match(ev.Direction, ev.Method, ev.Authority, ev.Path)
}

// Query is what both tap endpoints are asked: how many events, for how long, which ones.
type Query struct {
	Max      int
	Duration time.Duration
	Filter   Filter
}

// ParseQuery reads the query parameters shared by both endpoints (ParamMax, ParamDuration,
// ParamPathPrefix, ParamMethod, ParamAuthority, ParamDirection), with DefaultMax and
// DefaultDuration for the missing ones; out-of-range values are errors that say what to give.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Max: DefaultMax, Duration: DefaultDuration}
	if s := v.Get(ParamMax); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxMax {
			return q, fmt.Errorf("%s %q: give a whole number from 1 to %d", ParamMax, s, MaxMax)
		}
		q.Max = n
	}
	if s := v.Get(ParamDuration); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > MaxDuration {
			return q, fmt.Errorf("%s %q: give a positive duration up to %s, such as 30s", ParamDuration, s, MaxDuration)
		}
		q.Duration = d
	}
	q.Filter = Filter{
		PathPrefix: v.Get(ParamPathPrefix),
		Method:     strings.ToUpper(v.Get(ParamMethod)),
		Authority:  v.Get(ParamAuthority),
		Direction:  v.Get(ParamDirection),
	}
	if d := q.Filter.Direction; d != "" && d != Inbound && d != Outbound {
		return q, fmt.Errorf("%s %q: give %s or %s, or leave it out for both", ParamDirection, d, Inbound, Outbound)
	}
	if p := q.Filter.PathPrefix; p != "" && !strings.HasPrefix(p, "/") {
		return q, fmt.Errorf("%s %q: a path starts with /", ParamPathPrefix, p)
	}
	return q, nil
}

// Values encodes q as query parameters (only the fields that differ from the defaults'
// meaning: every filter set, max and duration always).
func (q Query) Values() url.Values {
	v := url.Values{}
	v.Set(ParamMax, strconv.Itoa(q.Max))
	v.Set(ParamDuration, q.Duration.String())
	for param, value := range map[string]string{
		ParamPathPrefix: q.Filter.PathPrefix, ParamMethod: q.Filter.Method,
		ParamAuthority: q.Filter.Authority, ParamDirection: q.Filter.Direction,
	} {
		if value != "" {
			v.Set(param, value)
		}
	}
	return v
}
