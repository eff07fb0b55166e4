package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// usedStates remembers the sign-in states whose callback came, each until
// its sign-in expires (the sign-in cookie's expiry, after which the callback
// is refused anyway), so that a callback is taken once: a callback URL
// replayed with the sign-in cookie it came with, within the cookie's life,
// is refused without asking GitHub.
//
// It is bounded: when full of states that have not expired, use refuses new
// ones (the caller answers 503) rather than forget one, which would let its
// callback be taken again. Filling it takes a started sign-in per entry,
// each living signInTTL at most.
//
// The record is this process's. Behind several replicas, a callback taken by
// replica A and replayed to replica B passes B's record; it signs nobody in
// all the same, because GitHub takes an authorization code once (the second
// exchange is answered bad_verification_code). The record spares GitHub the
// second exchange where it can and tells the person what happened; a shared
// record (a database table) would add nothing to what GitHub enforces.
//
// Its methods are safe for concurrent use.
type usedStates struct {
	max int

	mu sync.Mutex
	m  map[[sha256.Size]byte]time.Time // by SHA-256 of the state: when its sign-in expires
	// oldest is no later than the earliest expiry in m: while now is before
	// it, a sweep would free nothing.
	oldest time.Time
}

// newUsedStates returns an empty record of at most n states.
func newUsedStates(n int) *usedStates {
	return &usedStates{max: n, m: map[[sha256.Size]byte]time.Time{}}
}

// useResult is what use decided.
type useResult int

const (
	stateFresh useResult = iota // first use: recorded
	stateUsed                   // its callback came before
	stateFull                   // the record is full: refuse, record nothing
)

// use records state, whose sign-in expires at exp, as used at now, and
// reports stateFresh the first time; stateUsed when it was used before and
// its sign-in has not expired; stateFull, recording nothing, when the
// record holds max states that have not expired. Check and record are one
// step: of two concurrent uses of one state, one is stateFresh.
func (u *usedStates) use(state string, exp, now time.Time) useResult {
	k := sha256.Sum256([]byte(state))
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.m[k]; ok && now.Before(e) {
		return stateUsed
	}
	if len(u.m) >= u.max && !now.Before(u.oldest) {
		u.sweep(now)
	}
	if len(u.m) >= u.max {
		return stateFull
	}
	u.m[k] = exp
	if len(u.m) == 1 || exp.Before(u.oldest) {
		u.oldest = exp
	}
	return stateFresh
}

// sweep drops the states expired at now and moves oldest to the earliest
// expiry left. The caller holds mu.
func (u *usedStates) sweep(now time.Time) {
	var oldest time.Time
	for k, e := range u.m {
		if !now.Before(e) {
			delete(u.m, k)
		} else if oldest.IsZero() || e.Before(oldest) {
			oldest = e
		}
	}
	u.oldest = oldest
}

// len returns how many states are recorded, expired ones included.
func (u *usedStates) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}
