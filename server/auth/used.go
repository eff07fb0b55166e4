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
// It is bounded: full, it forgets the state recorded first to record a new
// one. It never refuses a sign-in for being full: anybody can start
// sign-ins and send their callbacks, and a record that refused when full
// would let them lock everyone out. A forgotten state's callback could be
// taken again, and still signs nobody in, because GitHub takes an
// authorization code once (the second exchange is answered
// bad_verification_code): the record is the first line, GitHub the last.
//
// The record is this process's. Behind several replicas, a callback taken by
// replica A and replayed to replica B passes B's record, and GitHub refuses
// its code all the same. The record spares GitHub the second exchange where
// it can and tells the person what happened; a shared record (a database
// table) would add nothing to what GitHub enforces.
//
// Its methods are safe for concurrent use.
type usedStates struct {
	mu sync.Mutex
	// m holds, by the first 16 bytes of the state's SHA-256, when its
	// sign-in expires, in Unix seconds (the sign-in cookie's precision).
	m map[[16]byte]int64
	// order holds m's keys in the order they were recorded, as a ring of
	// len(order) slots from head: the one to forget first is order[head].
	order [][16]byte
	head  int
}

// newUsedStates returns an empty record of at most n states.
func newUsedStates(n int) *usedStates {
	return &usedStates{m: make(map[[16]byte]int64, n), order: make([][16]byte, 0, n)}
}

// useResult is what use decided.
type useResult int

const (
	stateFresh useResult = iota // first use: recorded
	stateUsed                   // its callback came before
)

// use records state, whose sign-in expires at exp, as used at now (both to
// the second, as the sign-in cookie keeps exp), and reports stateFresh the
// first time; stateUsed when it was used before and its sign-in has not
// expired. Full, it forgets the state recorded first. Check and record are
// one step: of two concurrent uses of one state, one is stateFresh. Its cost
// does not depend on how many states are recorded.
func (u *usedStates) use(state string, exp, now time.Time) useResult {
	sum := sha256.Sum256([]byte(state))
	k := [16]byte(sum[:16])
	e, t := exp.Unix(), now.Unix()
	u.mu.Lock()
	defer u.mu.Unlock()
	if x, ok := u.m[k]; ok {
		if t < x {
			return stateUsed
		}
		u.m[k] = e // expired: its slot in order stays where it was
		return stateFresh
	}
	if len(u.order) < cap(u.order) {
		u.order = append(u.order, k)
	} else {
		delete(u.m, u.order[u.head])
		u.order[u.head] = k
		u.head = (u.head + 1) % len(u.order)
	}
	u.m[k] = e
	return stateFresh
}

// len returns how many states are recorded, expired ones included.
func (u *usedStates) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}
