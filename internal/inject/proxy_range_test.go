package inject

import (
	"strconv"
	"testing"

	proxyconfig "github.com/lightmesh/lightmesh/proxy/config"
)

// The range inject accepts for proxy-max-in-flight-requests is the one the proxy accepts in
// MESH_PROXY_MAX_IN_FLIGHT_REQUESTS: a value inject lets through must not stop the proxy from
// starting, and one it refuses must be one the proxy would refuse too.
func TestMaxInFlightRangeIsTheProxys(t *testing.T) {
	for n, proxyAccepts := range map[int]bool{
		MinMaxInFlightRequests - 1: false, MinMaxInFlightRequests: true,
		MaxMaxInFlightRequests: true, MaxMaxInFlightRequests + 1: false,
	} {
		value := strconv.Itoa(n)
		_, err := proxyconfig.Load(func(name string) (string, bool) {
			if name == EnvMaxInFlightRequests {
				return value, true
			}
			return "", false
		})
		if (err == nil) != proxyAccepts {
			t.Errorf("%s=%s: the proxy's error %v; want accepted %v", EnvMaxInFlightRequests, value, err, proxyAccepts)
		}
		if _, err := ParseMaxInFlightRequests(value); (err == nil) != proxyAccepts {
			t.Errorf("proxy-max-in-flight-requests %s: inject's error %v; want accepted %v", value, err, proxyAccepts)
		}
	}
}
