// Package gcetest is a local fake of the two Compute Engine API calls deployhook
// makes (compute.googleapis.com, REST, v1), faithful to the answers the real API
// gives, so that every test of code that reads a VM's status, network interface,
// numeric ID or host keys runs against the same server:
//
//   - instances.get: GET /compute/v1/projects/P/zones/Z/instances/N answers the
//     instance resource (id as a decimal string, name, status, zone,
//     networkInterfaces with name and networkIP, selfLink...), or 404 with
//     Google's error body for an unknown instance.
//   - instances.getGuestAttributes: GET .../instances/N/getGuestAttributes?queryPath=Q
//     answers the attributes under Q (a namespace "hostkeys/" or one key
//     "hostkeys/ssh-ed25519"), or 404 "The resource 'Q' of type 'Guest Attribute'
//     was not found." when there are none, as the real API does.
//
// Every request must carry "Authorization: Bearer T" with T one of
// Options.Tokens (401 otherwise); a denied permission answers 403 with the
// message the real API gives. Any other request fails the test.
//
// Because a test of the Compute API also needs the tokens it presents, the
// server is also the OAuth 2.0 token endpoint of a service account key: a key
// file written by Server.ServiceAccountKey names it as its token_uri, and the
// endpoint verifies the signed JWT assertion with the key's public half before
// it issues Options.Tokens[0].
//
//	s := gcetest.NewServer(t, gcetest.Options{})
//	s.SetInstance(gcetest.Instance{Project: "p", Zone: "z", Name: "vm", ID: 42, Status: "RUNNING"})
//	c, err := gce.New(ctx, lg, gce.Options{Endpoint: s.URL(), ClientOptions: ...})
package gcetest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/ssh"
)

// DefaultToken is the access token the server accepts and issues when
// Options.Tokens is empty.
const DefaultToken = "ya29.gcetest-token"

// Permissions the calls need, named in 403 answers as the real API names them.
const (
	PermissionGet                = "compute.instances.get"
	PermissionGetGuestAttributes = "compute.instances.getGuestAttributes"
)

// Options configures a Server.
type Options struct {
	// Tokens are the bearer tokens the API accepts; the token endpoint issues
	// the first. [DefaultToken] when empty.
	Tokens []string
	// PageSize is how many items a page of a list call holds at most (the
	// rest follow with nextPageToken); 0: all on one page.
	PageSize int
}

// NIC is a network interface of an instance.
type NIC struct {
	Name string // nic0, nic1...
	IP   string // the primary internal IPv4 address (networkIP)
}

// Attribute is one guest attribute, as the guest agent writes it.
type Attribute struct {
	Namespace, Key, Value string
}

// Instance is a VM the fake knows.
type Instance struct {
	Project, Zone, Name string
	// ID is the numeric instance ID (sent as a decimal string, like the API).
	ID uint64
	// Status is RUNNING, TERMINATED...; "RUNNING" when empty.
	Status string
	// NICs are its network interfaces; one nic0 at 10.128.0.5 when nil.
	NICs []NIC
	// Attributes are its guest attributes.
	Attributes []Attribute
	// Labels are its labels, which instances.aggregatedList filters on.
	Labels map[string]string
}

// HostKeyAttributes returns the guest attributes the guest agent publishes for
// keys: namespace "hostkeys", the key type as the key, and the base64 key blob
// as the value.
func HostKeyAttributes(keys ...ssh.PublicKey) []Attribute {
	var out []Attribute
	for _, k := range keys {
		out = append(out, Attribute{"hostkeys", k.Type(), base64.StdEncoding.EncodeToString(k.Marshal())})
	}
	return out
}

// Op names a call of the API, for Inject and Stats.
type Op string

// The calls the fake serves.
const (
	OpGet                = Op("instances.get")
	OpGetGuestAttributes = Op("instances.getGuestAttributes")
	OpToken              = Op("token")
)

// Fault replaces the answer to the next call of Op with Status and Body (raw
// JSON, see [ErrorBody]). Times is how many calls it answers; 1 when zero.
type Fault struct {
	Op     Op
	Status int
	Body   string
	Times  int
}

// Request is one request as the fake saw it.
type Request struct {
	Method string
	URI    string // escaped path and ?query, as sent
	Auth   string // the Authorization header
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	tb  testing.TB
	srv *httptest.Server
	tok []string

	mu        sync.Mutex
	instances map[string]*Instance // by project/zone/name
	denied    map[string]bool      // project/zone/name + " " + permission
	faults    []*Fault
	reqs      []Request
	counts    map[Op]int
	scopes    map[string]bool
	key       *rsa.PrivateKey          // of the service account key file, made on first use
	groups    map[string][]GroupMember // managed instance groups, by project/location/name
	pageSize  int
}

// NewServer starts a fake that knows no instance; it is closed when the test ends.
func NewServer(tb testing.TB, opts Options) *Server {
	s := &Server{tb: tb, tok: opts.Tokens, instances: map[string]*Instance{}, denied: map[string]bool{},
		counts: map[Op]int{}, scopes: map[string]bool{}}
	if len(s.tok) == 0 {
		s.tok = []string{DefaultToken}
	}
	s.groups = map[string][]GroupMember{}
	s.pageSize = opts.PageSize
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

// URL is the API's base URL, for gce.Options.Endpoint.
func (s *Server) URL() string { return s.srv.URL }

// Token is the access token the token endpoint issues.
func (s *Server) Token() string { return s.tok[0] }

// SetInstance adds inst, or replaces the instance of the same project, zone
// and name (a VM recreated under its name has a new ID).
func (s *Server) SetInstance(inst Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inst.Status == "" {
		inst.Status = "RUNNING"
	}
	if inst.NICs == nil {
		inst.NICs = []NIC{{Name: "nic0", IP: "10.128.0.5"}}
	}
	inst.NICs = slices.Clone(inst.NICs)
	inst.Attributes = slices.Clone(inst.Attributes)
	inst.Labels = maps.Clone(inst.Labels)
	s.instances[inst.Project+"/"+inst.Zone+"/"+inst.Name] = &inst
}

// Update changes the instance of project, zone and name in place (its status,
// its guest attributes...). It fails the test if there is no such instance.
func (s *Server) Update(project, zone, name string, f func(*Instance)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.instances[project+"/"+zone+"/"+name]
	if inst == nil {
		s.tb.Errorf("gcetest: Update of unknown instance %s/%s/%s", project, zone, name)
		return
	}
	f(inst)
}

// Deny makes calls needing permission on the instance answer 403, as they do
// for an identity without a role that grants it.
func (s *Server) Deny(project, zone, name, permission string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[project+"/"+zone+"/"+name+" "+permission] = true
}

// Inject queues f: the next call of f.Op is answered with it.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times <= 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// Requests returns every API request so far (token requests excluded), in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// Count returns how many calls of op the fake answered (faults and errors included).
func (s *Server) Count(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// Scopes returns the OAuth scopes the token endpoint was asked for.
func (s *Server) Scopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for sc := range s.scopes {
		out = append(out, sc)
	}
	slices.Sort(out)
	return out
}

// ServiceAccountKey writes a service account key file for email into dir and
// returns its path. Its token_uri is this server, which signs nothing but
// verifies the key's JWT assertions and issues Token.
func (s *Server) ServiceAccountKey(tb testing.TB, dir, email string) string {
	tb.Helper()
	s.mu.Lock()
	if s.key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			s.mu.Unlock()
			tb.Fatal(err)
		}
		s.key = k
	}
	key := s.key
	s.mu.Unlock()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "gcetest-project",
		"private_key_id": "gcetest-key-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   email,
		"client_id":      "1234567890",
		"token_uri":      s.srv.URL + "/token",
	})
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, "service-account.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// ErrorBody is the JSON body of a Compute API error answer.
func ErrorBody(code int, reason, message string) string {
	type item struct {
		Message string `json:"message"`
		Domain  string `json:"domain"`
		Reason  string `json:"reason"`
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": code, "message": message,
		"errors": []item{{Message: message, Domain: "global", Reason: reason}},
	}})
	return string(b)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.token(w, r)
		return
	}
	uri := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		uri += "?" + r.URL.RawQuery
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, Request{Method: r.Method, URI: uri, Auth: r.Header.Get("Authorization")})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	answer := func(code int, body string) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
	if s.serveFleet(w, r, answer) {
		return
	}
	// /compute/v1/projects/P/zones/Z/instances/N[/getGuestAttributes]
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/compute/v1/"), "/")
	if !strings.HasPrefix(r.URL.Path, "/compute/v1/") || len(parts) < 6 || len(parts) > 7 ||
		parts[0] != "projects" || parts[2] != "zones" || parts[4] != "instances" ||
		(len(parts) == 7 && parts[6] != "getGuestAttributes") || r.Method != http.MethodGet {
		s.tb.Errorf("gcetest: unexpected request %s %s", r.Method, uri)
		answer(http.StatusNotFound, ErrorBody(404, "notFound", "The requested URL was not found on this server."))
		return
	}
	op, perm := OpGet, PermissionGet
	if len(parts) == 7 {
		op, perm = OpGetGuestAttributes, PermissionGetGuestAttributes
	}
	s.counts[op]++
	if !slices.Contains(s.tok, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
		answer(http.StatusUnauthorized, ErrorBody(401, "authError",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."))
		return
	}
	for i, f := range s.faults {
		if f.Op == op {
			if f.Times--; f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			answer(f.Status, f.Body)
			return
		}
	}
	project, zone, name := parts[1], parts[3], parts[5]
	resource := "projects/" + project + "/zones/" + zone + "/instances/" + name
	if s.denied[project+"/"+zone+"/"+name+" "+perm] {
		answer(http.StatusForbidden, ErrorBody(403, "forbidden", fmt.Sprintf("Required '%s' permission for '%s'", perm, resource)))
		return
	}
	inst := s.instances[project+"/"+zone+"/"+name]
	if inst == nil {
		answer(http.StatusNotFound, ErrorBody(404, "notFound", fmt.Sprintf("The resource '%s' was not found", resource)))
		return
	}
	if op == OpGet {
		answer(http.StatusOK, instanceJSON(inst))
		return
	}
	q := r.URL.Query()
	path := q.Get("queryPath")
	if len(q) != 1 || path == "" {
		s.tb.Errorf("gcetest: getGuestAttributes with query %q, want queryPath alone", r.URL.RawQuery)
	}
	var items []map[string]string
	for _, a := range inst.Attributes {
		if ns, ok := strings.CutSuffix(path, "/"); (ok && a.Namespace == ns) || path == a.Namespace+"/"+a.Key {
			items = append(items, map[string]string{"namespace": a.Namespace, "key": a.Key, "value": a.Value})
		}
	}
	if len(items) == 0 {
		answer(http.StatusNotFound, ErrorBody(404, "notFound", fmt.Sprintf("The resource '%s' of type 'Guest Attribute' was not found.", path)))
		return
	}
	b, _ := json.Marshal(map[string]any{
		"kind":       "compute#guestAttributes",
		"queryPath":  path,
		"queryValue": map[string]any{"items": items},
		"selfLink":   "https://www.googleapis.com/compute/v1/" + resource + "/guestAttributes/" + path,
	})
	answer(http.StatusOK, string(b))
}

// instanceJSON is an instances.get answer, shaped as the real one.
func instanceJSON(inst *Instance) string {
	base := "https://www.googleapis.com/compute/v1/projects/" + inst.Project
	var nics []map[string]string
	for _, n := range inst.NICs {
		nics = append(nics, map[string]string{
			"kind":       "compute#networkInterface",
			"network":    base + "/global/networks/default",
			"subnetwork": base + "/regions/" + region(inst.Zone) + "/subnetworks/default",
			"networkIP":  n.IP,
			"name":       n.Name,
			"stackType":  "IPV4_ONLY",
		})
	}
	b, _ := json.Marshal(map[string]any{
		"kind":              "compute#instance",
		"id":                strconv.FormatUint(inst.ID, 10),
		"creationTimestamp": "2026-03-02T04:05:06.789-08:00",
		"name":              inst.Name,
		"machineType":       base + "/zones/" + inst.Zone + "/machineTypes/e2-standard-4",
		"status":            inst.Status,
		"zone":              base + "/zones/" + inst.Zone,
		"networkInterfaces": nics,
		"metadata": map[string]any{"kind": "compute#metadata", "items": []map[string]string{
			{"key": "enable-oslogin", "value": "TRUE"}, {"key": "enable-guest-attributes", "value": "TRUE"}}},
		"selfLink": base + "/zones/" + inst.Zone + "/instances/" + inst.Name,
		"labels":   inst.Labels,
	})
	return string(b)
}

func region(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

// token is the OAuth 2.0 token endpoint of the service account key
// (RFC 7523 JWT bearer grant, as Google's oauth2.googleapis.com/token).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[OpToken]++
	w.Header().Set("Content-Type", "application/json")
	bad := func(format string, args ...any) {
		s.tb.Errorf("gcetest: token request: "+format, args...)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}`)
	}
	if r.Method != http.MethodPost {
		bad("method %s", r.Method)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		bad("grant_type %q (%v)", r.PostForm.Get("grant_type"), err)
		return
	}
	if s.key == nil {
		bad("no service account key was written")
		return
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(*jwt.Token) (any, error) {
		return &s.key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.srv.URL+"/token"), jwt.WithExpirationRequired())
	if err != nil {
		bad("assertion: %v", err)
		return
	}
	for _, sc := range strings.Fields(fmt.Sprint(claims["scope"])) {
		s.scopes[sc] = true
	}
	fmt.Fprintf(w, `{"access_token": %q, "expires_in": 3599, "token_type": "Bearer"}`, s.tok[0])
}
