package dataplane

// route applies the outbound policy (Options.Policy.Outbound) of the resolved service to
// HTTP requests. Not yet applied: requests go to the resolved service.
func (p *Proxy) route(next Handler) Handler {
	return next
}
