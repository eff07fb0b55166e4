package auth

import (
	"html/template"
	"net/http"
)

// page is one of the sign-in flow's own pages: a heading, a sentence, and a
// link or a sign-out form. Its text is chosen here, never taken from GitHub,
// Google or an error.
type page struct {
	Title   string
	Message string
	Link    string // a path on this server, or empty
	Label   string // the link's text
	// Form, when set, is a POST form to Form carrying CSRF, with the button Label.
	Form string
	CSRF string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} · deployhook</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#1f2328}
a,button{font:inherit}button{padding:.3em 1em}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{- if .Form}}<form method="post" action="{{.Form}}"><input type="hidden" name="` + CSRFField + `" value="{{.CSRF}}"><button type="submit">{{.Label}}</button></form>
{{- else if .Link}}<p><a href="{{.Link}}">{{.Label}}</a></p>{{end}}
</body></html>
`))

// CSRFField is the name of the form field that carries Person.CSRF in the
// sign-out form (and that the console's forms use).
const CSRFField = "csrf"

// render writes p with status code. Pages of the sign-in flow are never
// cached and never framed.
func render(w http.ResponseWriter, code int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	pageTmpl.Execute(w, p)
}
