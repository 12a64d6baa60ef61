package dataplane

import "testing"

// growStack's frame must stay on the stack: on the heap it would grow nothing and cost an
// allocation of handlerStackFrame bytes per HTTP/2 request.
func TestGrowStackDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, growStack); n != 0 {
		t.Fatalf("growStack allocates %.0f times per call; its frame escaped to the heap", n)
	}
}
