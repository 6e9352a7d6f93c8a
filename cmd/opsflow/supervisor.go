package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// supervisor runs the dev stack's long-lived parts, each with its own
// context so that they stop one by one in reverse start order: the load
// generator before the API it feeds, the API before the worker.
type supervisor struct {
	log      *slog.Logger
	services []*service
	// exited is closed when the first service returns on its own.
	exited    chan struct{}
	firstExit *service
	once      sync.Once
}

type service struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func newSupervisor(log *slog.Logger) *supervisor {
	return &supervisor{log: log, exited: make(chan struct{})}
}

// start runs fn until stop, or until fn returns by itself, which ends wait.
// Its context keeps ctx's values but not its cancellation: stop decides
// when each service ends.
func (s *supervisor) start(ctx context.Context, name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	svc := &service{name: name, cancel: cancel, done: make(chan struct{})}
	s.services = append(s.services, svc)
	go func() {
		svc.err = fn(ctx)
		close(svc.done)
		s.once.Do(func() {
			s.firstExit = svc
			close(s.exited)
		})
	}()
}

// wait returns nil when ctx ends (Ctrl-C), or the error of a service that
// stopped by itself.
func (s *supervisor) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.exited:
		return s.exitError()
	}
}

// exitError describes the service that stopped first; call it only after
// exited is closed.
func (s *supervisor) exitError() error {
	if s.firstExit.err != nil {
		return fmt.Errorf("%s: %w", s.firstExit.name, s.firstExit.err)
	}
	return fmt.Errorf("%s stopped unexpectedly", s.firstExit.name)
}

// stop ends the services newest first, each after the previous is done.
func (s *supervisor) stop() {
	for _, svc := range slices.Backward(s.services) {
		s.log.Info("stopping " + svc.name)
		svc.cancel()
		<-svc.done
		if svc.err != nil && !errors.Is(svc.err, context.Canceled) && svc != s.firstExit {
			s.log.Error(svc.name+" stopped with an error", "err", svc.err)
		}
	}
}
