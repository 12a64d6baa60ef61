package dataplane

// trace makes a span for each request when Options.Tracer is set: a child of the context the
// request carries, written back into the request so the next hop continues the trace, and
// finished with the response status.
func (p *Proxy) trace(direction string) Middleware {
	return func(next Handler) Handler {
		if p.opts.Tracer == nil {
			return next
		}
		return HandlerFunc(func(ex *Exchange) {
			span := p.opts.Tracer.Start(ex.R, direction, ex.Labels.Authority)
			defer func() { span.Finish(ex.Status, ex.Failure) }()
			next.ServeExchange(ex)
		})
	}
}
