package server

import "testing"

func TestPerson_CSRFValid(t *testing.T) {
	tests := []struct {
		name  string
		csrf  string
		token string
		want  bool
	}{
		{name: "the session's token", csrf: "tok-123", token: "tok-123", want: true},
		{name: "another token", csrf: "tok-123", token: "tok-124"},
		{name: "a prefix", csrf: "tok-123", token: "tok-12"},
		{name: "longer", csrf: "tok-123", token: "tok-1234"},
		{name: "empty token", csrf: "tok-123", token: ""},
		{name: "a person without a token", csrf: "", token: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Person{Login: "alice", CSRF: tt.csrf}).CSRFValid(tt.token); got != tt.want {
				t.Errorf("CSRFValid(%q) with CSRF %q = %v, want %v", tt.token, tt.csrf, got, tt.want)
			}
		})
	}
}
