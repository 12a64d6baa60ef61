// Command pause is the process of the pod sandbox ("pause") image that containerd starts for
// every pod of the local cluster. It holds the pod's namespaces open, reaps zombie children
// (it is PID 1 when the pod shares its process namespace) and exits 0 on SIGTERM or SIGINT,
// like Kubernetes' own pause. Build it static: CGO_ENABLED=0 go build ./hack/pause.
package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		os.Exit(0)
	}
}

// reapChildren collects every exited child without blocking. Signals coalesce, so one SIGCHLD
// may stand for several exits: loop until no exited child is left.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}
