package gitsha

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "lower-case hex", in: sha, want: true},
		{name: "all zeros", in: strings.Repeat("0", 40), want: true},
		{name: "all f", in: strings.Repeat("f", 40), want: true},
		{name: "upper case", in: strings.ToUpper(sha), want: false},
		{name: "one upper-case digit", in: "A" + sha[1:], want: false},
		{name: "empty", in: "", want: false},
		{name: "short form", in: sha[:7], want: false},
		{name: "39 digits", in: sha[:39], want: false},
		{name: "41 digits", in: sha + "0", want: false},
		{name: "SHA-256 length", in: sha + sha[:24], want: false},
		{name: "g is not hex", in: "g" + sha[1:], want: false},
		{name: "space", in: " " + sha[1:], want: false},
		{name: "trailing newline", in: sha[:39] + "\n", want: false},
		{name: "non-ASCII of 40 bytes", in: "é" + sha[2:], want: false},
		{name: "ref name", in: "refs/heads/main" + strings.Repeat("0", 25), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Valid(tc.in); got != tc.want {
				t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestLower(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "lower already", in: "0123abcdef", want: "0123abcdef"},
		{name: "upper", in: "0123ABCDEF", want: "0123abcdef"},
		{name: "mixed", in: "aBcD", want: "abcd"},
		{name: "letters past f", in: "XYZ", want: "xyz"},
		{name: "empty", in: "", want: ""},
		{name: "kelvin sign stays", in: "\u212A1", want: "\u212A1"},
		{name: "non-ASCII upper stays", in: "ÄB", want: "Äb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Lower(tc.in); got != tc.want {
				t.Errorf("Lower(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	const sha = "0123456789ABCDEF0123456789abcdef01234567"
	if got := Lower(sha); !Valid(got) {
		t.Errorf("Valid(Lower(%q)) = false, want true", sha)
	}
}
