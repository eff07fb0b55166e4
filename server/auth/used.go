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
	// m holds, by the first 16 bytes of the state's SHA-256, when its
	// sign-in expires, in Unix seconds (the sign-in cookie's precision).
	m map[[16]byte]int64
	// oldest is no later than the earliest expiry in m: while now is before
	// it, a sweep would free nothing.
	oldest int64
}

// newUsedStates returns an empty record of at most n states.
func newUsedStates(n int) *usedStates {
	return &usedStates{max: n, m: map[[16]byte]int64{}}
}

// useResult is what use decided.
type useResult int

const (
	stateFresh useResult = iota // first use: recorded
	stateUsed                   // its callback came before
	stateFull                   // the record is full: refuse, record nothing
)

// use records state, whose sign-in expires at exp, as used at now (both to
// the second, as the sign-in cookie keeps exp), and
// reports stateFresh the first time; stateUsed when it was used before and
// its sign-in has not expired; stateFull, recording nothing, when the
// record holds max states that have not expired. Check and record are one
// step: of two concurrent uses of one state, one is stateFresh.
func (u *usedStates) use(state string, exp, now time.Time) useResult {
	sum := sha256.Sum256([]byte(state))
	k := [16]byte(sum[:16])
	e, t := exp.Unix(), now.Unix()
	u.mu.Lock()
	defer u.mu.Unlock()
	if x, ok := u.m[k]; ok && t < x {
		return stateUsed
	}
	if len(u.m) >= u.max && t >= u.oldest {
		u.sweep(t)
	}
	if len(u.m) >= u.max {
		return stateFull
	}
	u.m[k] = e
	if len(u.m) == 1 || e < u.oldest {
		u.oldest = e
	}
	return stateFresh
}

// sweep drops the states expired at now (Unix seconds) and moves oldest to
// the earliest expiry left. The caller holds mu.
func (u *usedStates) sweep(now int64) {
	oldest := int64(0)
	for k, e := range u.m {
		if now >= e {
			delete(u.m, k)
		} else if oldest == 0 || e < oldest {
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
