// Package oslogintest is a local fake of the Cloud OS Login API
// (oslogin.googleapis.com, REST, v1) for one account, faithful to the calls
// deployhook makes and the answers the real API gives:
//
//   - users.importSshPublicKey: POST /v1/users/ACCOUNT:importSshPublicKey?projectId=P[&regions=R]
//     with {"key": "ssh-ed25519 AAAA...", "expirationTimeUsec": "..."} adds the
//     key to the profile and answers {"loginProfile": ...}: the POSIX accounts
//     and every key of the profile (not only the new one), keyed by fingerprint.
//   - users.getLoginProfile: GET /v1/users/ACCOUNT/loginProfile?projectId=P.
//   - users.sshPublicKeys.delete: DELETE /v1/users/ACCOUNT/sshPublicKeys/FINGERPRINT
//     answers {} or 404 NOT_FOUND.
//
// Keys whose expiry has passed are dropped from the profile, as OS Login drops
// them. Every request must carry "Authorization: Bearer T" with T one of
// Options.Tokens (401 otherwise); another account than Options.Account is
// denied (403), and unknown fields in a body are refused (400) like the real
// API refuses them. Any other request fails the test.
//
// What OS Login does on the VM can be played too: with
// Options.AuthorizedKeysFile, the fake keeps that file equal to the profile's
// keys (as the guest's AuthorizedKeysCommand shows them to sshd), so a real
// sshd accepts exactly the keys the profile holds.
package oslogintest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultToken is the access token accepted when Options.Tokens is empty.
const DefaultToken = "ya29.oslogintest-token"

// DefaultUser is the POSIX username of the default primary account: OS Login
// names a service account's user sa_<its numeric id>.
const DefaultUser = "sa_112233445566778899001"

// PosixAccount is a POSIX account of the profile.
type PosixAccount struct {
	Username string
	UID      int64
	Primary  bool
}

// Options configures a Server.
type Options struct {
	// Account is the email whose profile the fake holds; required.
	Account string
	// Tokens are the bearer tokens accepted; [DefaultToken] when empty.
	Tokens []string
	// Accounts are the profile's POSIX accounts: one primary [DefaultUser]
	// when nil; empty (not nil) for a profile without any, as for a project
	// where OS Login is not enabled.
	Accounts []PosixAccount
	// AuthorizedKeysFile, when set, is rewritten after every change with the
	// profile's keys in authorized_keys format (emptied at start).
	AuthorizedKeysFile string
}

// Import is one importSshPublicKey call as the fake saw it.
type Import struct {
	Project     string
	Regions     []string
	Key         string    // authorized_keys text
	Fingerprint string    // the fingerprint the fake gave it
	Expires     time.Time // from expirationTimeUsec
}

// Op names a call, for Inject.
type Op string

// The calls the fake serves.
const (
	OpImport  = Op("importSshPublicKey")
	OpProfile = Op("getLoginProfile")
	OpDelete  = Op("sshPublicKeys.delete")
)

// Fault replaces the answer to the next Times calls (1 when zero) of Op with
// an error answer of HTTP status Status (and Google's error body for it).
type Fault struct {
	Op     Op
	Status int
	Times  int
}

type key struct {
	text    string
	expires time.Time
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	tb   testing.TB
	srv  *httptest.Server
	opts Options

	mu      sync.Mutex
	keys    map[string]key // by fingerprint
	imports []Import
	deleted []string
	faults  []*Fault
}

// NewServer starts the fake, closed when the test ends.
func NewServer(tb testing.TB, opts Options) *Server {
	if opts.Account == "" {
		tb.Fatal("oslogintest: Options.Account is required")
	}
	if len(opts.Tokens) == 0 {
		opts.Tokens = []string{DefaultToken}
	}
	if opts.Accounts == nil {
		opts.Accounts = []PosixAccount{{Username: DefaultUser, UID: 2147483649, Primary: true}}
	}
	s := &Server{tb: tb, opts: opts, keys: map[string]key{}}
	s.writeKeys()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

// URL is the API's base URL, for oslogin.Options.Endpoint.
func (s *Server) URL() string { return s.srv.URL }

// Inject queues f.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times <= 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// Imports returns the imports so far that carried a valid token for the
// account, in order, including those refused for their body or by a Fault.
func (s *Server) Imports() []Import {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.imports)
}

// Deleted returns the fingerprints deleted so far, in order.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// Keys returns the fingerprints of the keys in the profile now, sorted.
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	fps := []string{}
	for fp := range s.keys {
		fps = append(fps, fp)
	}
	slices.Sort(fps)
	return fps
}

// Fingerprint is the name the fake gives a key: the hex SHA-256 of its blob,
// the form OS Login uses.
func Fingerprint(k ssh.PublicKey) string {
	sum := sha256.Sum256(k.Marshal())
	return hex.EncodeToString(sum[:])
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	fail := func(code int, status, message string) {
		w.WriteHeader(code)
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": message, "status": status}})
		_, _ = w.Write(b)
	}
	user := "/v1/users/" + s.opts.Account
	var op Op
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, ":importSshPublicKey"):
		op = OpImport
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/loginProfile"):
		op = OpProfile
	case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/sshPublicKeys/"):
		op = OpDelete
	default:
		s.tb.Errorf("oslogintest: unexpected request %s %s", r.Method, r.URL)
		fail(http.StatusNotFound, "NOT_FOUND", "The requested URL was not found on this server.")
		return
	}
	if !slices.Contains(s.opts.Tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
		fail(http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
		return
	}
	if !strings.HasPrefix(r.URL.Path, user+":") && !strings.HasPrefix(r.URL.Path, user+"/") {
		fail(http.StatusForbidden, "PERMISSION_DENIED", "The caller does not have permission")
		return
	}
	var imp *Import
	if op == OpImport {
		q := r.URL.Query()
		s.imports = append(s.imports, Import{Project: q.Get("projectId"), Regions: q["regions"]})
		imp = &s.imports[len(s.imports)-1]
	}
	for i, f := range s.faults {
		if f.Op == op {
			if f.Times--; f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			status := map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
				404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[f.Status]
			msg := map[int]string{403: "The caller does not have permission", 404: "Requested entity was not found."}[f.Status]
			if msg == "" {
				msg = http.StatusText(f.Status)
			}
			fail(f.Status, status, msg)
			return
		}
	}
	switch op {
	case OpImport:
		var body struct {
			Key                string `json:"key"`
			ExpirationTimeUsec string `json:"expirationTimeUsec"` // int64 in proto3 JSON is a string
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			fail(http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
			return
		}
		if imp.Project == "" {
			fail(http.StatusBadRequest, "INVALID_ARGUMENT", "Request contains an invalid argument.")
			return
		}
		pk, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(body.Key))
		if err != nil || len(bytes.TrimSpace(rest)) != 0 {
			fail(http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid key format.")
			return
		}
		var expires time.Time
		if body.ExpirationTimeUsec != "" {
			usec, err := strconv.ParseInt(body.ExpirationTimeUsec, 10, 64)
			if err != nil {
				fail(http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid value at 'ssh_public_key.expiration_time_usec'")
				return
			}
			expires = time.UnixMicro(usec)
		}
		fp := Fingerprint(pk)
		imp.Key, imp.Fingerprint, imp.Expires = body.Key, fp, expires
		s.keys[fp] = key{text: body.Key, expires: expires}
		s.writeKeys()
		s.profile(w, r, true)
	case OpProfile:
		if r.URL.Query().Get("projectId") == "" {
			s.tb.Errorf("oslogintest: getLoginProfile without projectId")
		}
		s.profile(w, r, false)
	case OpDelete:
		fp := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		if _, ok := s.keys[fp]; !ok || r.URL.Path != user+"/sshPublicKeys/"+fp {
			fail(http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.")
			return
		}
		delete(s.keys, fp)
		s.deleted = append(s.deleted, fp)
		s.writeKeys()
		fmt.Fprint(w, `{}`)
	}
}

// profile answers the login profile: {"loginProfile": ...} for an import, the
// same object for getLoginProfile.
func (s *Server) profile(w http.ResponseWriter, r *http.Request, wrap bool) {
	// Enums are names in proto3 JSON, numbers when the client asks for
	// enum-encoding=int (the Go client does).
	var linux any = "LINUX"
	if strings.Contains(r.URL.Query().Get("$alt"), "enum-encoding=int") {
		linux = 1
	}
	type posix struct {
		Primary             bool   `json:"primary,omitempty"`
		Username            string `json:"username"`
		UID                 string `json:"uid"`
		GID                 string `json:"gid"`
		HomeDirectory       string `json:"homeDirectory"`
		OperatingSystemType any    `json:"operatingSystemType"`
		AccountID           string `json:"accountId"`
		Name                string `json:"name"`
	}
	type sshKey struct {
		Key                string `json:"key"`
		ExpirationTimeUsec string `json:"expirationTimeUsec,omitempty"`
		Fingerprint        string `json:"fingerprint"`
		Name               string `json:"name"`
	}
	var accounts []posix
	for _, a := range s.opts.Accounts {
		id := strconv.FormatInt(a.UID, 10)
		accounts = append(accounts, posix{Primary: a.Primary, Username: a.Username, UID: id, GID: id,
			HomeDirectory: "/home/" + a.Username, OperatingSystemType: linux, AccountID: "gcetest-project",
			Name: "users/" + s.opts.Account + "/projects/gcetest-project"})
	}
	keys := map[string]sshKey{}
	for fp, k := range s.keys {
		var usec string
		if !k.expires.IsZero() {
			usec = strconv.FormatInt(k.expires.UnixMicro(), 10)
		}
		keys[fp] = sshKey{Key: k.text, ExpirationTimeUsec: usec, Fingerprint: fp,
			Name: "users/" + s.opts.Account + "/sshPublicKeys/" + fp}
	}
	prof := map[string]any{"name": s.opts.Account, "posixAccounts": accounts, "sshPublicKeys": keys}
	var v any = prof
	if wrap {
		v = map[string]any{"loginProfile": prof}
	}
	b, _ := json.Marshal(v)
	_, _ = w.Write(b)
}

// expireLocked drops the keys whose expiry has passed.
func (s *Server) expireLocked() {
	now := time.Now()
	changed := false
	for fp, k := range s.keys {
		if !k.expires.IsZero() && !now.Before(k.expires) {
			delete(s.keys, fp)
			changed = true
		}
	}
	if changed {
		s.writeKeys()
	}
}

// writeKeys writes the profile's keys to AuthorizedKeysFile.
func (s *Server) writeKeys() {
	if s.opts.AuthorizedKeysFile == "" {
		return
	}
	var lines []string
	for _, k := range s.keys {
		lines = append(lines, k.text+"\n")
	}
	slices.Sort(lines)
	if err := os.WriteFile(s.opts.AuthorizedKeysFile, []byte(strings.Join(lines, "")), 0o600); err != nil {
		s.tb.Errorf("oslogintest: write %s: %v", s.opts.AuthorizedKeysFile, err)
	}
}
