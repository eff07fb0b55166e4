package shell

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The shell splits Join's output back into the same words, whatever they hold.
func TestJoin_roundTrip(t *testing.T) {
	args := []string{"plain", "two words", "it's", `"double"`, "$(touch /nonexistent/x)", "`id`", "a\nb", "", `back\slash`}
	out, err := exec.Command("sh", "-c", `words() { for a; do printf '%s\0' "$a"; done; }; words `+Join(args)).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, args) {
		t.Errorf("round trip = %q, want %q", got, args)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"abc", "'abc'"},
		{"it's", `'it'\''s'`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
