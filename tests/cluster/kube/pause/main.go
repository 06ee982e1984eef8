// Command pause is the node tier's sandbox image: it waits for SIGTERM or SIGINT and
// exits, as Kubernetes' own pause does. Built static (CGO_ENABLED=0) into an image with
// crane by tests/cluster/build, since the node has no registry to pull one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
