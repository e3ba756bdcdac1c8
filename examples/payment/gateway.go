package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
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
	if !(rate >= 0 && rate <= 1) {
		return fmt.Errorf("failure rate %v is outside [0, 1]", rate)
	}
	if latency < 0 || latency > time.Minute {
		return fmt.Errorf("latency %v is outside [0, 1m]", latency)
	}
	g.failureRate.Store(math.Float64bits(rate))
	g.latency.Store(int64(latency))
	return nil
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
