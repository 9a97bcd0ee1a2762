// Package backoff tracks per-key exponential backoff (container restarts, image pulls) with an
// injected clock, so the podmanager can ask "may I try again now, and if not, how long?"
// without sleeping. It is not safe for concurrent use: each pod worker owns its own Backoff.
package backoff

import (
	"time"

	"k8s.io/utils/clock"
)

// Config sets the curve. Zero fields take the documented defaults.
type Config struct {
	Initial time.Duration // first wait after a failure; default 10s
	Max     time.Duration // cap; default 300s
	// Reset forgets a key whose last failure is older than this, so the next failure starts
	// again at Initial; default 10m (the kubelet's "10 minutes of clean running").
	Reset time.Duration
}

func (c Config) withDefaults() Config {
	if c.Initial <= 0 {
		c.Initial = 10 * time.Second
	}
	if c.Max <= 0 {
		c.Max = 300 * time.Second
	}
	if c.Max < c.Initial {
		c.Max = c.Initial
	}
	if c.Reset <= 0 {
		c.Reset = 10 * time.Minute
	}
	return c
}

type entry struct {
	wait time.Duration // the wait that applies after lastFailure
	last time.Time     // when the last failure was recorded
}

// Backoff holds one entry per key.
type Backoff struct {
	cfg     Config
	clock   clock.PassiveClock
	entries map[string]*entry
}

// New returns a Backoff with cfg's curve, reading time from clk.
func New(cfg Config, clk clock.PassiveClock) *Backoff {
	return &Backoff{cfg: cfg.withDefaults(), clock: clk, entries: map[string]*entry{}}
}

// Failed records a failure of key now and returns how long the caller must wait before the
// next attempt: Initial for a fresh (or reset) key, then doubling up to Max.
func (b *Backoff) Failed(key string) time.Duration {
	now := b.clock.Now()
	e, ok := b.entries[key]
	switch {
	case !ok || now.Sub(e.last) >= b.cfg.Reset:
		e = &entry{wait: b.cfg.Initial}
		b.entries[key] = e
	default:
		e.wait *= 2
		if e.wait > b.cfg.Max {
			e.wait = b.cfg.Max
		}
	}
	e.last = now
	return e.wait
}

// Remaining is how long key must still wait; zero when it may try now.
func (b *Backoff) Remaining(key string) time.Duration {
	e, ok := b.entries[key]
	if !ok {
		return 0
	}
	if left := e.last.Add(e.wait).Sub(b.clock.Now()); left > 0 {
		return left
	}
	return 0
}

// RemainingSince is how long key must still wait when the wait counts from t, the time of the
// failure itself (a container's exit), rather than from when it was recorded. A key whose
// last recorded attempt was Reset or more before t is free: the attempt ran clean that long.
func (b *Backoff) RemainingSince(key string, t time.Time) time.Duration {
	e, ok := b.entries[key]
	if !ok || t.Sub(e.last) >= b.cfg.Reset {
		return 0
	}
	if left := t.Add(e.wait).Sub(b.clock.Now()); left > 0 {
		return left
	}
	return 0
}

// Current is the wait recorded for key by its last failure (zero if none), for messages such
// as "back-off 20s restarting failed container".
func (b *Backoff) Current(key string) time.Duration {
	if e, ok := b.entries[key]; ok {
		return e.wait
	}
	return 0
}

// Each calls fn for every key with its current wait and the time the wait, counted from the
// last recorded failure, ends. Keys come in no particular order.
func (b *Backoff) Each(fn func(key string, wait time.Duration, retryAt time.Time)) {
	for k, e := range b.entries {
		fn(k, e.wait, e.last.Add(e.wait))
	}
}

// Forget drops key, e.g. after a success.
func (b *Backoff) Forget(key string) { delete(b.entries, key) }

// GC drops keys whose last failure is older than Reset; they would restart at Initial anyway.
func (b *Backoff) GC() {
	now := b.clock.Now()
	for k, e := range b.entries {
		if now.Sub(e.last) >= b.cfg.Reset {
			delete(b.entries, k)
		}
	}
}
