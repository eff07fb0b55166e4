package auth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployhook/deployhook/server/auth/authtest"
)

// A callback is taken once. Its replay, with the sign-in cookie it came
// with, within the cookie's life, is refused with a reason a person can act
// on, without a second exchange at GitHub; the callback clears the sign-in
// cookie. A replica that has not seen the callback (its record is its own)
// asks GitHub, which refuses the code it took before: nobody is signed in
// either way. Safety invariant 6: the replay costs no call to GitHub here.
func TestGitHubAuth_callback_oneShot(t *testing.T) {
	e := newGHEnv(t, nil)
	victim := e.browser(t, false)
	cb := e.flow(t, victim, alice, "/app")
	u, _ := url.Parse(e.srv.URL)
	kept := victim.Jar.Cookies(u) // the sign-in cookie, as a thief would keep it
	if len(kept) != 1 || kept[0].Name != "deployhook-signin" {
		t.Fatalf("cookies before the callback: %v", kept)
	}
	resp, _ := e.get(t, victim, cb.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the callback: %s", resp.Status)
	}
	if ck := cookie(resp, "deployhook-signin"); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("the callback's sign-in cookie: %v; want it cleared", ck)
	}

	e.clock.Advance(signInTTL - time.Second) // the kept cookie still opens
	thief := e.browser(t, false)
	thief.Jar.SetCookies(u, kept)
	resp, body := e.get(t, thief, cb.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "This sign-in link was already used; sign in again.") ||
		!strings.Contains(body, `href="/auth/signin?next=%2Fapp"`) {
		t.Errorf("the replay: %s %q; want 400, already used, and a link to sign in again", resp.Status, body)
	}
	if ck := cookie(resp, "deployhook-session"); ck != nil {
		t.Error("the replay set a session cookie")
	}
	if ck := cookie(resp, "deployhook-signin"); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("the replay's sign-in cookie: %v; want it cleared", ck)
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != 1 {
		t.Errorf("%d code exchanges, want 1: the replay must not reach GitHub", n)
	}

	// Replica B, same key and public URL, has no record of the state.
	lg, _ := newLogger(t)
	b, err := GitHub(lg, GitHubOptions{
		ClientID: e.gh.ClientID, ClientSecret: e.gh.ClientSecret,
		WebURL: e.gh.URL + "/", APIURL: e.gh.APIURL + "/", PublicURL: e.srv.URL,
		SessionKey: bytes.Repeat([]byte{7}, 32), Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, cb.String(), nil)
	for _, ck := range kept {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	b.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "GitHub did not accept this sign-in") ||
		cookie(w.Result(), "deployhook-session") != nil {
		t.Errorf("the replay on replica B: %d %q; want 400 from GitHub's refusal and no session", w.Code, w.Body)
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != 2 {
		t.Errorf("%d code exchanges, want 2 (replica B asked GitHub)", n)
	}
	noSecrets(t, "the log", e.logs.String(), e.gh)
	noSecrets(t, "what the browser was sent", e.bodies.String(), e.gh)
}

// The record of used states is bounded, and full it forgets the state
// recorded first rather than refuse anyone: a flood of callbacks cannot lock
// people out of sign-in. A forgotten state's replay reaches GitHub, which
// refuses the code it took before, so nobody is signed in; a state still
// recorded is refused without GitHub. Safety invariant 6: callbacks cost
// bounded memory.
func TestGitHubAuth_callback_usedFull(t *testing.T) {
	e := newGHEnv(t, nil)
	e.auth.used = newUsedStates(2)
	u, _ := url.Parse(e.srv.URL)
	type signIn struct {
		cb   *url.URL
		kept []*http.Cookie
	}
	var ins []signIn
	for i := range 3 {
		c := e.browser(t, false)
		cb := e.flow(t, c, alice, "/app")
		kept := c.Jar.Cookies(u)
		if resp, _ := e.get(t, c, cb.String()); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in %d: %s, want 303 (a full record refuses nobody)", i, resp.Status)
		}
		ins = append(ins, signIn{cb, kept})
		e.clock.Advance(time.Second)
	}
	if n := e.auth.used.len(); n != 2 {
		t.Errorf("%d states recorded, want 2", n)
	}
	replay := func(in signIn) (*http.Response, string) {
		c := e.browser(t, false)
		c.Jar.SetCookies(u, in.kept)
		return e.get(t, c, in.cb.String())
	}
	resp, body := replay(ins[2])
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Errorf("replay of a recorded state: %s %q; want 400, already used", resp.Status, body)
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != 3 {
		t.Errorf("%d code exchanges, want 3: a recorded state's replay must not reach GitHub", n)
	}
	resp, body = replay(ins[0])
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "GitHub did not accept this sign-in") ||
		cookie(resp, "deployhook-session") != nil {
		t.Errorf("replay of the forgotten state: %s %q; want GitHub's refusal and no session", resp.Status, body)
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != 4 {
		t.Errorf("%d code exchanges, want 4: the forgotten state's replay asks GitHub", n)
	}
}

func TestUsedStates_use(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type use struct {
		state string
		exp   time.Duration // after t0
		at    time.Duration // after t0
		want  useResult
	}
	tests := []struct {
		name    string
		uses    []use
		wantLen int
	}{
		{name: "first use", uses: []use{{"a", 10, 0, stateFresh}}, wantLen: 1},
		{name: "second use", uses: []use{{"a", 10, 0, stateFresh}, {"a", 10, 9, stateUsed}}, wantLen: 1},
		{name: "second use after the expiry", uses: []use{{"a", 10, 0, stateFresh}, {"a", 20, 10, stateFresh}}, wantLen: 1},
		{name: "another state", uses: []use{{"a", 10, 0, stateFresh}, {"b", 10, 1, stateFresh}}, wantLen: 2},
		{name: "full forgets the first recorded", uses: []use{{"a", 10, 0, stateFresh}, {"b", 12, 1, stateFresh}, {"c", 12, 2, stateFresh}, {"a", 10, 3, stateFresh}, {"c", 12, 4, stateUsed}}, wantLen: 2},
		{name: "full, a recorded state is still refused as used", uses: []use{{"a", 10, 0, stateFresh}, {"b", 12, 1, stateFresh}, {"a", 10, 2, stateUsed}, {"b", 12, 2, stateUsed}}, wantLen: 2},
		{name: "an expired state recorded again keeps its place", uses: []use{{"a", 10, 0, stateFresh}, {"b", 30, 1, stateFresh}, {"a", 40, 10, stateFresh}, {"c", 40, 11, stateFresh}, {"b", 30, 12, stateUsed}, {"a", 40, 13, stateFresh}}, wantLen: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUsedStates(2)
			for i, x := range tt.uses {
				if got := u.use(x.state, t0.Add(x.exp*time.Minute), t0.Add(x.at*time.Minute)); got != x.want {
					t.Errorf("use %d (%s at %d min) = %v, want %v", i, x.state, x.at, got, x.want)
				}
			}
			if u.len() != tt.wantLen {
				t.Errorf("%d recorded, want %d", u.len(), tt.wantLen)
			}
		})
	}
}

// Check and record are one step: of many concurrent callbacks of one state,
// exactly one goes on.
func TestUsedStates_use_concurrent(t *testing.T) {
	u := newUsedStates(maxUsedStates)
	now := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fresh int
	)
	for range 32 {
		wg.Go(func() {
			if u.use("state", now.Add(time.Minute), now) == stateFresh {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if fresh != 1 {
		t.Errorf("%d of 32 concurrent uses were fresh, want 1", fresh)
	}
}

// gatedGitHub is a transport to the fake GitHub that holds each code
// exchange until release is closed, telling entered first.
type gatedGitHub struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gatedGitHub) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/login/oauth/access_token" {
		select {
		case g.entered <- struct{}{}:
		case <-g.release:
		}
		<-g.release
	}
	return http.DefaultTransport.RoundTrip(r)
}

// At most maxExchanges callbacks wait on GitHub at once: the next waits
// for a slot, and is answered 503 without calling GitHub when none frees
// within its wait; one that gets a slot while it waits goes on; once they
// are done, sign-ins go on. Safety invariant 6: what arrives before
// authentication holds bounded connections.
func TestGitHubAuth_callback_exchangesBounded(t *testing.T) {
	gate := &gatedGitHub{entered: make(chan struct{}), release: make(chan struct{})}
	e := newGHEnv(t, func(o *GitHubOptions) { o.HTTPClient = &http.Client{Transport: gate} })
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(gate.release) }) }
	t.Cleanup(release) // before the servers close: no handler stays held
	type pending struct {
		c  *http.Client
		cb string
	}
	var ps []pending
	for range maxExchanges + 2 {
		c := e.browser(t, false)
		ps = append(ps, pending{c, e.flow(t, c, alice, "/app").String()})
	}
	results := make(chan string, maxExchanges+1)
	for _, p := range ps[:maxExchanges] {
		go func() {
			resp, err := p.c.Get(p.cb)
			if err != nil {
				results <- err.Error()
				return
			}
			resp.Body.Close()
			results <- resp.Status
		}()
	}
	for i := range maxExchanges {
		select {
		case <-gate.entered:
		case got := <-results:
			t.Fatalf("callback %d ended (%s) with %d exchanges in flight, want it held at GitHub", i+1, got, i)
		}
	}
	// All slots are held: the next callback, after its wait, is refused
	// without GitHub. It either answers or reaches the gate, which fails
	// the test.
	e.auth.waitSlot = 100 * time.Millisecond
	type answer struct {
		resp *http.Response
		body string
	}
	next := make(chan answer, 1)
	go func() {
		resp, err := ps[maxExchanges].c.Get(ps[maxExchanges].cb)
		if err != nil {
			next <- answer{body: err.Error()}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			next <- answer{body: err.Error()}
			return
		}
		next <- answer{resp, string(b)}
	}()
	var a answer
	select {
	case a = <-next:
	case <-gate.entered:
		t.Fatalf("callback %d reached GitHub with %d exchanges in flight", maxExchanges+1, maxExchanges)
	}
	if a.resp == nil {
		t.Fatalf("callback %d: %s", maxExchanges+1, a.body)
	}
	resp, body := a.resp, a.body
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Too many sign-ins") ||
		!strings.Contains(body, `href="/auth/signin?next=%2Fapp"`) || cookie(resp, "deployhook-session") != nil {
		t.Errorf("callback %d: %s %q; want 503, a link to sign in again, and no session", maxExchanges+1, resp.Status, body)
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != 0 {
		t.Errorf("%d exchanges reached GitHub while all were held, want 0", n)
	}

	// One more, with a long wait: it waits for a slot, and takes the first
	// that frees.
	e.auth.waitSlot = time.Minute
	last := ps[maxExchanges+1]
	go func() {
		resp, err := last.c.Get(last.cb)
		if err != nil {
			results <- err.Error()
			return
		}
		resp.Body.Close()
		results <- resp.Status
	}()
	for deadline := time.Now().Add(time.Minute); e.auth.waiting.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the callback past the bound is not waiting for a slot")
		}
	}
	release()
	for i := range maxExchanges + 1 {
		if got := <-results; got != "303 See Other" {
			t.Errorf("callback %d: %s, want 303 See Other", i, got)
		}
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != maxExchanges+1 {
		t.Errorf("%d exchanges, want %d", n, maxExchanges+1)
	}
	if len(e.auth.exchanges) != 0 {
		t.Errorf("%d slots still held after every callback ended", len(e.auth.exchanges))
	}
	c := e.browser(t, false)
	if resp, _ := e.get(t, c, e.flow(t, c, alice, "/app").String()); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a sign-in after the rush: %s, want 303", resp.Status)
	}
}

// signInCookie is a sign-in cookie of g's for state and verifier, started
// at now, as serveSignIn sets it.
func signInCookie(g *GitHubAuth, state, verifier string, now time.Time) *http.Cookie {
	v := g.seal.seal(signinPurpose, newRecord(now.Add(signInTTL).Unix()).str(state).str(verifier).str("/app").b)
	return &http.Cookie{Name: g.signin, Value: v}
}

// A GitHub that does not answer holds a callback apiTimeout per call at
// most, and its slot is given back: the exchange is bounded.
func TestGitHubAuth_callback_exchangeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lg, logs := newLogger(t)
		g, err := GitHub(lg, GitHubOptions{ClientID: "Iv1.x", ClientSecret: "s3cret", PublicURL: "http://127.0.0.1:1",
			SessionKey: bytes.Repeat([]byte{7}, 32), HTTPClient: &http.Client{Transport: hangingGitHub{}}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			state := fmt.Sprintf("STATE%dAAAAAAAAAAAAAAAAAAAA", i)
			r := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/auth/callback?code=c0de&state="+state, nil)
			r.AddCookie(signInCookie(g, state, strings.Repeat("v", 52), time.Now()))
			w := httptest.NewRecorder()
			start := time.Now()
			g.Handler().ServeHTTP(w, r)
			if took := time.Since(start); took != apiTimeout {
				t.Errorf("callback %d took %s with GitHub silent, want apiTimeout (%s)", i, took, apiTimeout)
			}
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "GitHub could not be reached") {
				t.Errorf("callback %d: %d %q; want 502", i, w.Code, w.Body)
			}
			if len(g.exchanges) != 0 {
				t.Errorf("callback %d: %d slots held after it ended, want 0", i, len(g.exchanges))
			}
		}
		if !strings.Contains(logs.String(), "code exchange failed") || strings.Contains(logs.String(), "s3cret") {
			t.Errorf("log %q; want the failed exchange, without the secret", logs.String())
		}
	})
}

// The person Who returns expires with the session: what outlives a request
// (an event stream) ends then.
func TestGitHubAuth_Who_expires(t *testing.T) {
	e := newGHEnv(t, nil)
	start := e.clock.Now()
	p := e.signIn(t, e.browser(t, true), alice)
	if want := start.Add(DefaultSessionTTL); !p.Expires.Equal(want) {
		t.Errorf("Expires %s, want %s (the session's expiry)", p.Expires, want)
	}
}

// The person Who returns for an IAP assertion expires when verify would
// refuse the assertion: its exp and the leeway.
func TestIAPAuth_Who_expires(t *testing.T) {
	e := newIAPEnv(t, nil)
	now := e.clock.Now()
	exp := now.Add(5 * time.Minute)
	tok := e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iat: now.Unix(), Exp: exp.Unix()})
	p, ok := e.who(tok)
	if want := exp.Add(iapLeeway); !ok || !p.Expires.Equal(want) {
		t.Fatalf("Who = %+v, %v; want Expires %s", p, ok, want)
	}
	// From what Who kept, the same.
	if q, ok := e.who(tok); !ok || !q.Expires.Equal(p.Expires) {
		t.Errorf("kept: Who = %+v, %v; want Expires %s", q, ok, p.Expires)
	}
	e.clock.Advance(p.Expires.Sub(now) - time.Second)
	if _, ok := e.who(tok); !ok {
		t.Error("refused a second before Expires")
	}
	e.clock.Advance(time.Second)
	if _, ok := e.who(tok); ok {
		t.Error("accepted at Expires")
	}
}

// BenchmarkUsedStates_use is the cost of a callback's check against a full
// record, the worst case an attacker can make: every use is a new state,
// recorded in place of the first recorded.
func BenchmarkUsedStates_use(b *testing.B) {
	u := newUsedStates(maxUsedStates)
	now := time.Now()
	states := make([]string, 2*maxUsedStates) // each forgotten before it comes again
	for i := range states {
		states[i] = fmt.Sprint("state", i)
	}
	for _, s := range states[:maxUsedStates] {
		u.use(s, now.Add(signInTTL), now)
	}
	b.ReportAllocs()
	i := maxUsedStates
	for b.Loop() {
		if u.use(states[i%len(states)], now.Add(signInTTL), now.Add(time.Minute)) != stateFresh {
			b.Fatal("refused")
		}
		i++
	}
}

// A full record of used states stays within the bound maxUsedStates's
// comment gives: safety invariant 6.
func TestUsedStates_memory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	u := newUsedStates(maxUsedStates)
	now := time.Now()
	for i := range maxUsedStates + 10 {
		u.use(fmt.Sprint("state", i), now.Add(signInTTL), now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d states: %d bytes of heap", u.len(), heap)
	if u.len() != maxUsedStates || heap > 5<<20 {
		t.Errorf("%d states in %d bytes; want %d in under 5 MiB", u.len(), heap, maxUsedStates)
	}
	runtime.KeepAlive(u)
}
