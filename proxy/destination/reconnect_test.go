package destination

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/controlconn"
)

// When the controller comes back, the streams are opened again as soon as the connection is
// ready, not after their backoff (here a minute, as after a long outage): the proxy learns
// of the endpoints that changed meanwhile within seconds.
func TestClientResubscribesAsSoonAsTheControllerIsBack(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	f, stop := serve(t, lis)
	conn, err := grpc.NewClient(addr, append(controlconn.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := New(ctx, Options{
		Client: destinationv1.NewDestinationClient(conn), Conn: conn, InitialTimeout: waitFor,
		MinBackoff: time.Minute, MaxBackoff: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	target := discovery.Target{Authority: "web.shop.svc.cluster.local:80"}
	const id = "spiffe://cluster.local/ns/shop/sa/web"
	go func() { _, _, _ = c.Resolve(t.Context(), target) }()
	f.next(t).updates <- addSet(id, "10.1.0.1:8080")
	eventually(t, c, target, "the first set", count(1))

	stop() // the controller goes; the stream ends and waits out a minute of backoff
	for deadline := time.Now().Add(waitFor); conn.GetState() == connectivity.Ready; {
		if time.Now().After(deadline) {
			t.Fatal("the connection never noticed that the server went away")
		}
		time.Sleep(10 * time.Millisecond) // polling the connection's state
	}
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s again: %v", addr, err)
	}
	back := time.Now()
	f2, stop2 := serve(t, lis2)
	defer stop2()
	s2 := f2.next(t) // within waitFor (10 s), far less than the backoff
	t.Logf("resubscribed %s after the controller came back", time.Since(back).Round(time.Millisecond))
	s2.updates <- addSet(id, "10.1.0.9:8080")
	eventually(t, c, target, "the set changed during the outage", func(d *discovery.Destination, found bool) bool {
		return found && len(d.Endpoints) == 1 && d.Endpoints[0].Addr.String() == "10.1.0.9:8080"
	})
}
