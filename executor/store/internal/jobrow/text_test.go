package jobrow

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	fill := strings.Repeat("a", MaxText-len(ellipsis)) // what a cut keeps of a long ASCII text
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"valid text unchanged", "deployed 0123456 ✓ 🚀", "deployed 0123456 ✓ 🚀"},
		{"NUL", "a\x00b", "a\uFFFDb"},
		{"invalid bytes, one each", "a\xff\xfeb", "a\uFFFD\uFFFDb"},
		{"truncated character", "caf\xc3", "caf\uFFFD"},
		{"exactly MaxText bytes", strings.Repeat("a", MaxText), strings.Repeat("a", MaxText)},
		{"one byte more", strings.Repeat("a", MaxText+1), fill + ellipsis},
		{"long text cut on a character boundary", "a" + strings.Repeat("é", MaxText), "a" + strings.Repeat("é", (MaxText-len(ellipsis)-1)/2) + ellipsis},
		{"cleaning makes it too long", strings.Repeat("\x00", MaxText), strings.Repeat("\uFFFD", (MaxText-len(ellipsis))/3) + ellipsis},
		{"a character cut at MaxText is dropped", strings.Repeat("a", MaxText-3) + "€€", strings.Repeat("a", MaxText-3) + ellipsis},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Text(tt.in)
			if got != tt.want {
				t.Errorf("Text(%q…) = %q… (%d bytes), want %q… (%d bytes)", head(tt.in), head(got), len(got), head(tt.want), len(tt.want))
			}
			if len(got) > MaxText || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
				t.Errorf("Text(%q…) is %d bytes, valid UTF-8 %t, NUL %t", head(tt.in), len(got), utf8.ValidString(got), strings.ContainsRune(got, 0))
			}
		})
	}
}

func TestOutput(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"valid output unchanged", "HEAD is now at 0123456 ✓\n", "HEAD is now at 0123456 ✓\n"},
		{"NUL and invalid UTF-8", "ok\x00bad\xffend\n", "ok\uFFFDbad\uFFFDend\n"},
		{"exactly MaxOutput bytes", strings.Repeat("x", MaxOutput), strings.Repeat("x", MaxOutput)},
		{"longer keeps its tail", "head" + strings.Repeat("x", MaxOutput), strings.Repeat("x", MaxOutput)},
		{"tail starts on a character boundary", strings.Repeat("é", MaxOutput), strings.Repeat("é", MaxOutput/2)},
		{"a 4-byte character cut after its first byte", "😀" + strings.Repeat("x", MaxOutput-3), strings.Repeat("x", MaxOutput-3)},
		{"cleaning makes it too long", strings.Repeat("\xff", 2*MaxOutput), strings.Repeat("\uFFFD", MaxOutput/3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Output(tt.in)
			if got != tt.want {
				t.Errorf("Output(%q…) = %q… (%d bytes), want %q… (%d bytes)", head(tt.in), head(got), len(got), head(tt.want), len(tt.want))
			}
			if len(got) > MaxOutput || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
				t.Errorf("Output(%q…) is %d bytes, valid UTF-8 %t, NUL %t", head(tt.in), len(got), utf8.ValidString(got), strings.ContainsRune(got, 0))
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name string
		s    string
		max  int
		want string
	}{
		{name: "short", s: "abc", max: 5, want: "abc"},
		{name: "exact", s: "abcde", max: 5, want: "abcde"},
		{name: "long keeps the tail", s: "abcdefgh", max: 3, want: "fgh"},
		{name: "cut inside a rune moves to its end", s: "a€€", max: 5, want: "€"},
		{name: "cut on a rune start", s: "a€€", max: 6, want: "€€"},
		{name: "invalid UTF-8 is cut by bytes", s: "\xff\xff\xff\xff\xffab", max: 5, want: "\xff\xff\xffab"},
		{name: "empty", s: "", max: 0, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tail(tt.s, tt.max); got != tt.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
			}
		})
	}
}

// head is the start of s, for messages.
func head(s string) string { return s[:min(len(s), 40)] }
