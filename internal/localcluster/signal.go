package localcluster

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context that is cancelled on SIGINT (Ctrl-C),
// SIGTERM or SIGHUP, so that a program using a cluster returns through its
// deferred Stop instead of dying with its namespaces, links and processes
// still in place. While the context is live the signals do not kill the
// program; call stop to restore their default behaviour.
//
//	ctx, stop := localcluster.SignalContext(context.Background())
//	defer stop()
//	c, err := localcluster.Start(ctx, localcluster.Options{})
//	if err != nil { ... }
//	defer c.Stop()
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
}
