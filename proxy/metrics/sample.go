package metrics

import (
	dto "github.com/prometheus/client_model/go"
)

// Sample returns the value of the series name whose labels include every pair of match:
// the counter or gauge value, or for a histogram its sample count, summed over matching
// series. Tests use it to read metrics after known traffic.
func (r *Registry) Sample(name string, match map[string]string) float64 {
	families, err := r.reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
		for _, m := range family.GetMetric() {
			if !matches(m, match) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// Bucket returns the cumulative count of the histogram name's bucket with upper bound le,
// summed over the series that match.
func (r *Registry) Bucket(name string, match map[string]string, le float64) uint64 {
	families, err := r.reg.Gather()
	if err != nil {
		return 0
	}
	var sum uint64
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
		for _, m := range family.GetMetric() {
			if !matches(m, match) || m.Histogram == nil {
				continue
			}
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetUpperBound() == le {
					sum += b.GetCumulativeCount()
				}
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, match map[string]string) bool {
	found := 0
	for _, pair := range m.GetLabel() {
		if want, ok := match[pair.GetName()]; ok {
			if pair.GetValue() != want {
				return false
			}
			found++
		}
	}
	return found == len(match)
}
