// Package auth signs people in to deployhook's operator console and decides
// what each may do there. It implements server.Auth twice:
//
//   - GitHub (ui.auth github): GitHub's OAuth web flow, with a state bound to
//     a short-lived sealed cookie and taken once, PKCE (S256), and a bound on
//     the callbacks waiting on GitHub at once, against github.web_url and
//     github.api_url, so GitHub Enterprise Server works as github.com does.
//     The session is a cookie sealed with AES-256-GCM that holds the login,
//     the name, the person's token, the anti-forgery token and the expiry;
//     nothing is kept on the server but caches. What a person may do on a
//     repository is asked of GitHub with their own token (read access to see a
//     target, push access or a configured team to press its buttons) and
//     cached briefly.
//   - IAP (ui.auth iap): deployhook behind Identity-Aware Proxy. Every request
//     carries IAP's signed assertion (x-goog-iap-jwt-assertion): an ES256 JWT
//     checked against Google's published keys (fetched and cached), its issuer
//     and the configured audience. The email is mapped to access by the
//     configured viewers and operators.
//
// Both fail closed: a request whose session or assertion cannot be verified
// is not signed in, and an access decision that cannot be made is an error,
// which the console answers with a denial. Tokens, client secrets and keys
// never appear in logs, pages or errors.
//
// Package authtest holds the fakes of GitHub's OAuth and API endpoints and
// of IAP's key server that the tests (this package's and the console's) use.
package auth
