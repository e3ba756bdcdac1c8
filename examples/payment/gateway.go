package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Gateway charges a payment with a card network or a payment processor.
type Gateway interface {
	Charge(ctx context.Context, txnID string, p Payment) (GatewayResponse, error)
}

// GatewayResponse is the processor's answer to a successful charge.
type GatewayResponse struct {
	AuthorizationCode string `json:"authorization_code"`
	Processor         string `json:"processor"`
	Message           string `json:"message"`
}

// ErrGatewayDeclined is a charge the simulated processor refused.
var ErrGatewayDeclined = errors.New("gateway: processor unavailable")

// SimulatedGateway stands in for a processor. Its failure rate and latency
// change at run time (through the admin endpoint) for chaos tests.
type SimulatedGateway struct {
	mu          sync.Mutex    // held by changes, so that one does not undo another
	failureRate atomic.Uint64 // float64 bits, in [0, 1]
	latency     atomic.Int64  // nanoseconds
	calls       atomic.Int64
}

// NewSimulatedGateway returns a gateway failing at rate with latency.
func NewSimulatedGateway(rate float64, latency time.Duration) (*SimulatedGateway, error) {
	g := &SimulatedGateway{}
	return g, g.Set(rate, latency)
}

// Set changes the failure rate (in [0, 1]) and latency (≥ 0, ≤ 1 minute).
func (g *SimulatedGateway) Set(rate float64, latency time.Duration) error {
	_, _, err := g.Change(&rate, &latency)
	return err
}

// Change sets the failure rate, the latency or both (as Set), leaving the
// one that is nil as it is, and returns the settings then in force. Changes
// at once take turns, so one changing the rate and another the latency
// both take; with an error nothing changes.
func (g *SimulatedGateway) Change(rate *float64, latency *time.Duration) (float64, time.Duration, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, l := g.Settings()
	if rate != nil {
		r = *rate
	}
	if latency != nil {
		l = *latency
	}
	if !(r >= 0 && r <= 1) {
		return 0, 0, fmt.Errorf("failure rate %v is outside [0, 1]", r)
	}
	if l < 0 || l > time.Minute {
		return 0, 0, fmt.Errorf("latency %v is outside [0, 1m]", l)
	}
	g.failureRate.Store(math.Float64bits(r))
	g.latency.Store(int64(l))
	return r, l, nil
}

// Settings returns the failure rate and latency in force.
func (g *SimulatedGateway) Settings() (float64, time.Duration) {
	return math.Float64frombits(g.failureRate.Load()), time.Duration(g.latency.Load())
}

// Calls returns how many charges reached the gateway.
func (g *SimulatedGateway) Calls() int64 { return g.calls.Load() }

// Charge implements Gateway.
func (g *SimulatedGateway) Charge(ctx context.Context, txnID string, p Payment) (GatewayResponse, error) {
	g.calls.Add(1)
	rate, latency := g.Settings()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return GatewayResponse{}, ctx.Err()
		case <-t.C:
		}
	}
	if rate > 0 && rand.Float64() < rate {
		return GatewayResponse{}, ErrGatewayDeclined
	}
	return GatewayResponse{
		AuthorizationCode: "auth_" + strconv.FormatUint(rand.Uint64()&0xffffffffff, 36),
		Processor:         "simulated",
		Message:           "approved",
	}, nil
}
