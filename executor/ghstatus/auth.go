package ghstatus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-github/v60/github"
	"golang.org/x/oauth2"
)

// StaticToken returns a TokenSource that always serves token (a fine-grained or
// classic personal access token), sent as "Authorization: Bearer <token>". The
// token is never logged.
func StaticToken(token string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})
}

// App token lifetimes.
const (
	// jwtBackdate is how far in the past the App JWT's iat lies, against clock
	// drift (GitHub's "Generating a JSON Web Token for a GitHub App").
	jwtBackdate = 60 * time.Second
	// jwtLifetime is the App JWT's exp after now; GitHub refuses more than 10
	// minutes, and iat is backdated, so exp - iat is exactly 10 minutes.
	jwtLifetime = 9 * time.Minute
	// refreshEarly is how long before its expires_at an installation token
	// (valid one hour) is replaced.
	refreshEarly = 5 * time.Minute
	// exchangeTimeout bounds one token exchange: oauth2.TokenSource.Token has
	// no context.
	exchangeTimeout = 30 * time.Second
)

// AppOptions configures NewAppTokenSource.
type AppOptions struct {
	AppID          int64  // the GitHub App's id (not its client id)
	InstallationID int64  // the App's installation on the repositories' account
	PrivateKeyPEM  []byte // the App's private key, PEM (PKCS#1 as GitHub issues it, or PKCS#8)
	// BaseURL is the REST API root, as Options.BaseURL (default github.com).
	BaseURL string
	// HTTPClient carries the token exchange (default: a new client on
	// http.DefaultTransport), with the same origin pinning, redirect policy and
	// answer cap as Options.HTTPClient.
	HTTPClient *http.Client
	// Now is the clock for the JWT's iat and exp (default time.Now).
	Now func() time.Time
}

// NewAppTokenSource returns a TokenSource of GitHub App installation tokens. On
// first use, and five minutes before the token's expires_at, it signs a JWT
// (RS256, iss = the App id, iat 60 s in the past, exp 9 min ahead) with the
// App's key and exchanges it at POST /app/installations/{id}/access_tokens; in
// between it serves the cached token. It is safe for concurrent use. Errors
// name the App and the installation and GitHub's answer, never the key, the
// JWT or the token. It fails at once on a missing id or an unreadable key.
func NewAppTokenSource(opts AppOptions) (oauth2.TokenSource, error) {
	if opts.AppID <= 0 || opts.InstallationID <= 0 {
		return nil, errors.New("github app: app_id and installation_id must both be set")
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(opts.PrivateKeyPEM)
	if err != nil {
		// jwt's parse errors never quote the key.
		return nil, fmt.Errorf("github app %d: read private key (want the PEM file GitHub generated): %w", opts.AppID, err)
	}
	src := &appSource{opts: opts, now: opts.Now}
	if src.now == nil {
		src.now = time.Now
	}
	src.gh, err = newGitHub(opts.HTTPClient, jwtSource{src}, opts.BaseURL)
	if err != nil {
		return nil, err
	}
	src.key = key
	return oauth2.ReuseTokenSourceWithExpiry(nil, src, refreshEarly), nil
}

// appSource mints installation tokens; oauth2.ReuseTokenSourceWithExpiry
// caches them.
type appSource struct {
	opts AppOptions
	now  func() time.Time
	key  any // *rsa.PrivateKey
	gh   *github.Client
}

// jwtSource serves a fresh App JWT for every exchange (it is not cached: the
// exchange happens about once an hour).
type jwtSource struct{ s *appSource }

// Token signs a new App JWT.
func (j jwtSource) Token() (*oauth2.Token, error) {
	now := j.s.now()
	claims := jwt.RegisteredClaims{
		Issuer:    strconv.FormatInt(j.s.opts.AppID, 10),
		IssuedAt:  jwt.NewNumericDate(now.Add(-jwtBackdate)),
		ExpiresAt: jwt.NewNumericDate(now.Add(jwtLifetime)),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(j.s.key)
	if err != nil {
		return nil, fmt.Errorf("github app %d: sign JWT: %w", j.s.opts.AppID, err)
	}
	return &oauth2.Token{AccessToken: signed, TokenType: "Bearer"}, nil
}

// Token exchanges a new JWT for an installation token.
func (s *appSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), exchangeTimeout)
	defer cancel()
	it, _, err := s.gh.Apps.CreateInstallationToken(ctx, s.opts.InstallationID, &github.InstallationTokenOptions{})
	if err != nil {
		var er *github.ErrorResponse
		if errors.As(err, &er) && er.Response != nil {
			err = apiErr(er)
		}
		return nil, fmt.Errorf("github app %d: installation %d token: %w", s.opts.AppID, s.opts.InstallationID, err)
	}
	if it.GetToken() == "" {
		return nil, fmt.Errorf("github app %d: installation %d token: GitHub answered without a token", s.opts.AppID, s.opts.InstallationID)
	}
	exp := it.GetExpiresAt().Time
	if exp.IsZero() {
		exp = s.now().Add(time.Hour) // GitHub's documented lifetime
	}
	return &oauth2.Token{AccessToken: it.GetToken(), TokenType: "Bearer", Expiry: exp}, nil
}
